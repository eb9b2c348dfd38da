"""corral's agent under a real Mesos 1.11.1 master, with mesos-execute as the framework: it
registers, runs command tasks with the states a mesos-execute user sees, kills them."""

from __future__ import annotations

import json
from pathlib import Path

from tests.mesos.mesoskit import agent_work_dir, joined, until, updates


def test_the_master_lists_the_agent_with_its_resources_and_attributes(mesos_master, joined_agent, port_block_10):
    master = mesos_master()
    agent = joined_agent(master, "--attributes=rack:r1;level:3;zone:{a,b}", "--hostname=corral-test")
    listed = until(lambda: joined(master, agent.port), what="the agent in /master/state")
    assert listed["hostname"] == "corral-test"
    assert listed["pid"] == f"slave(1)@127.0.0.1:{agent.port}"
    assert listed["attributes"] == {"rack": "r1", "level": 3.0, "zone": "{a, b}"}
    assert listed["resources"]["cpus"] == 4.0 and listed["resources"]["mem"] == 2048.0
    assert listed["resources"]["ports"] == f"[{port_block_10}-{port_block_10 + 9}]"
    # The id the master gave is kept for re-registration.
    slave_id = Path(agent_work_dir(agent), "meta", "slave_id")
    until(lambda: slave_id.exists() and slave_id.read_text().strip() == listed["id"], what="meta/slave_id")


def test_a_command_task_finishes_and_its_output_is_in_the_sandbox(mesos_master, joined_agent):
    master = mesos_master()
    agent = joined_agent(master)
    until(lambda: joined(master, agent.port))
    done = master.execute("--name=hello", "--command=echo hi from corral", "--resources=cpus:0.1;mem:32")
    assert updates(done.stdout) == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"], done.stdout + done.stderr
    assert "message: 'Command exited with status 0'" in done.stdout
    (container,) = agent.state()["containers"]
    sandbox = Path(agent_work_dir(agent), "containers", container["container_id"]["value"])
    assert (sandbox / "stdout").read_text() == "hi from corral\n"
    # The master saw it end, and the resources it held are free again.
    task = until(lambda: _completed_tasks(master), what="the task among the master's completed tasks")[0]
    assert task["state"] == "TASK_FINISHED"
    assert [s["state"] for s in task["statuses"]][:3] == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]
    assert joined(master, agent.port)["used_resources"]["cpus"] == 0
    # Its updates all acknowledged, nothing of the task is left to recover.
    frameworks = Path(agent_work_dir(agent), "meta", "frameworks")
    until(lambda: not list(frameworks.iterdir()), what="the done task's checkpoint removed")


def _completed_tasks(master) -> list[dict]:
    return [t for f in master.state()["completed_frameworks"] for t in f["completed_tasks"]]


def test_a_failing_command_task_fails_with_its_exit_status(mesos_master, joined_agent):
    master = mesos_master()
    agent = joined_agent(master)
    until(lambda: joined(master, agent.port))
    done = master.execute("--name=three", "--command=exit 3", "--resources=cpus:0.1;mem:32")
    assert updates(done.stdout) == ["TASK_STARTING", "TASK_RUNNING", "TASK_FAILED"], done.stdout + done.stderr
    assert "message: 'Command exited with status 3'" in done.stdout
    assert "source: SOURCE_EXECUTOR" in done.stdout


def test_the_framework_kills_a_task(mesos_master, joined_agent):
    master = mesos_master()
    agent = joined_agent(master)
    until(lambda: joined(master, agent.port))
    done = master.execute("--name=sleeper", "--command=sleep 100", "--kill_after=1secs", "--resources=cpus:0.1;mem:32")
    assert updates(done.stdout) == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLING", "TASK_KILLED"], done.stdout
    (container,) = agent.state()["containers"]
    assert container["statuses"][-1]["state"] == "TASK_KILLED"
    assert "command terminated by SIGTERM" in done.stdout          # within the default grace period


def test_a_task_that_does_not_fit_fails_to_launch_and_holds_nothing(mesos_master, joined_agent):
    """A task whose image this agent cannot provision: TASK_FAILED with Mesos's launch reason."""
    master = mesos_master()
    agent = joined_agent(master)
    until(lambda: joined(master, agent.port))
    done = master.execute("--name=imaged", "--command=true", "--docker_image=busybox", "--resources=cpus:0.1;mem:32")
    assert updates(done.stdout) == ["TASK_FAILED"], done.stdout
    assert "reason: REASON_CONTAINER_LAUNCH_FAILED" in done.stdout and "--image_providers=docker" in done.stdout
    assert json.dumps(agent.state()["containers"]) == "[]"


def test_a_task_over_its_memory_is_reported_as_mesos_reports_an_oom(mesos_master, joined_agent):
    master = mesos_master()
    agent = joined_agent(master, "--isolation=cgroups/cpu,cgroups/mem")
    until(lambda: joined(master, agent.port))
    hog = "head -c 400m /dev/zero | tail"      # tail keeps the whole of its input in memory
    done = master.execute("--name=hog", f"--command={hog}", "--resources=cpus:0.1;mem:32")
    assert updates(done.stdout) == ["TASK_STARTING", "TASK_RUNNING", "TASK_FAILED"], done.stdout
    assert "reason: REASON_CONTAINER_LIMITATION_MEMORY" in done.stdout
    assert "source: SOURCE_AGENT" in done.stdout


def test_a_docker_image_task_runs_in_its_image(mesos_master, joined_agent):
    """mesos-execute --docker_image: a MESOS container with a docker image, from the local tar
    store that scripts/setup.sh fills (busybox)."""
    store = Path("/var/lib/corral/images/busybox:latest.tar")
    if not store.exists():
        import pytest
        pytest.skip(f"no {store}: scripts/setup.sh makes it")
    master = mesos_master()
    agent = joined_agent(master, "--image_providers=docker", f"--docker_registry={store.parent}",
                         "--isolation=cgroups/cpu,cgroups/mem,filesystem/linux,namespaces/pid")
    until(lambda: joined(master, agent.port))
    done = master.execute("--name=boxed", "--docker_image=busybox", "--command=ls /bin/busybox; echo $MESOS_TASK_ID",
                          "--resources=cpus:0.1;mem:64")
    assert updates(done.stdout) == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"], done.stdout
    (container,) = agent.state()["containers"]
    sandbox = Path(agent_work_dir(agent), "containers", container["container_id"]["value"])
    assert (sandbox / "stdout").read_text() == "/bin/busybox\nboxed\n"


def test_a_framework_that_goes_away_has_its_tasks_killed(mesos_master, joined_agent):
    """mesos-execute killed: the master removes its framework (no failover timeout) and sends
    ShutdownFrameworkMessage; the agent kills the framework's tasks."""
    import signal
    master = mesos_master()
    agent = joined_agent(master)
    until(lambda: joined(master, agent.port))
    framework = master.execute_async("--name=orphan", "--command=sleep 100", "--resources=cpus:0.1;mem:32")
    until(lambda: agent.state()["containers"], what="a container")
    until(lambda: master.state()["frameworks"] and master.state()["frameworks"][0]["tasks"]
          and master.state()["frameworks"][0]["tasks"][0]["state"] == "TASK_RUNNING", what="the task running")
    framework.send_signal(signal.SIGKILL)
    framework.communicate()

    def ended() -> bool:
        (container,) = agent.state()["containers"]
        return container["statuses"][-1]["state"] == "TASK_KILLED"
    until(ended, timeout=60, what="the orphan's container killed")
    until(lambda: joined(master, agent.port)["used_resources"]["cpus"] == 0, what="its resources free")


def test_an_agent_with_credentials_still_takes_the_masters_messages(mesos_master, joined_agent, tmp_path):
    """--credentials guards the operator API; the master's libprocess messages carry no HTTP
    credentials (as with mesos-agent), and were answered 401 and lost: the agent never registered."""
    secrets = tmp_path / "credentials"
    secrets.write_text("operator s3cret\n")
    master = mesos_master()
    agent = joined_agent(master, f"--credentials={secrets}")
    until(lambda: joined(master, agent.port), what="the agent in /master/state")
    done = master.execute("--name=guarded", "--command=true", "--resources=cpus:0.1;mem:32")
    assert updates(done.stdout) == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"], done.stdout
    assert agent.call({"type": "GET_HEALTH"})[0] == 401          # the operator API still wants them


def test_standalone_containers_and_framework_tasks_never_overcommit(mesos_master, joined_agent):
    """The master offers what it knows of; a standalone container holds what it took from the
    same allocator, so a task that no longer fits is refused at launch, not run on top of it."""
    master = mesos_master()
    agent = joined_agent(master)
    until(lambda: joined(master, agent.port))
    status, _ = agent.call({"type": "LAUNCH_CONTAINER", "launch_container": {
        "container_id": {"value": "standalone"}, "command": {"value": "sleep 100"},
        "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 3.95}}]}})
    assert status == 200
    try:
        done = master.execute("--name=squeezed", "--command=true", "--resources=cpus:0.1;mem:32")
        assert updates(done.stdout) == ["TASK_FAILED"], done.stdout
        assert "reason: REASON_CONTAINER_LAUNCH_FAILED" in done.stdout and "cpus" in done.stdout
    finally:
        agent.call({"type": "KILL_CONTAINER", "kill_container": {"container_id": {"value": "standalone"}}})
        agent.call({"type": "WAIT_CONTAINER", "wait_container": {"container_id": {"value": "standalone"}}})


def test_task_groups_fail_saying_they_are_not_supported(mesos_master, joined_agent):
    import json as _json
    master = mesos_master()
    agent = joined_agent(master)
    until(lambda: joined(master, agent.port))
    resources = [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                 {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}]
    group = {"tasks": [{"name": "grouped", "task_id": {"value": "grouped"}, "agent_id": {"value": ""},
                        "resources": resources, "command": {"value": "true"}}]}
    done = master.execute(f"--task_group={_json.dumps(group)}")
    assert updates(done.stdout) == ["TASK_FAILED"], done.stdout + done.stderr
    assert "task groups (the default executor) are not supported yet" in done.stdout


def test_a_kill_past_the_kill_policys_grace_period_is_a_sigkill(mesos_master, joined_agent):
    """A task that ignores SIGTERM is SIGKILLed once its kill policy's grace period is over."""
    import json as _json
    master = mesos_master()
    agent = joined_agent(master)
    until(lambda: joined(master, agent.port))
    task = {"name": "stubborn", "task_id": {"value": "stubborn"}, "agent_id": {"value": ""},
            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                          {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}],
            "command": {"value": "trap '' TERM; sleep 100 & wait; wait"},
            "kill_policy": {"grace_period": {"nanoseconds": 500_000_000}}}
    done = master.execute(f"--task={_json.dumps(task)}", "--kill_after=1secs")
    assert updates(done.stdout)[-1] == "TASK_KILLED", done.stdout
    assert "command terminated by SIGKILL" in done.stdout, done.stdout      # SIGTERM first, ignored
