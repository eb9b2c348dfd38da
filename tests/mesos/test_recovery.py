"""Faults under a real Mesos master: the agent SIGKILLed while a checkpointing framework's tasks
run or while their updates wait for acknowledgement, a non-checkpointing framework's task across
an agent restart, and a master restart."""

from __future__ import annotations

import time

from tests.mesos.mesoskit import acknowledged, joined, until, updates


def _wait_for_line(process, text: str, timeout: float = 60) -> list[str]:
    """Read mesos-execute's output until a line holding `text`; the lines read."""
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"no {text!r} in mesos-execute's output: {''.join(lines)}")


def _finish(process, timeout: float = 90) -> str:
    out, _ = process.communicate(timeout=timeout)
    return out


def test_a_checkpointing_frameworks_task_lives_through_an_agent_sigkill(mesos_master, joined_agent, corral):
    master = mesos_master()
    agent = joined_agent(master)
    until(lambda: joined(master, agent.port))
    framework = master.execute_async("--name=survivor", "--checkpoint", "--command=sleep 4",
                                     "--resources=cpus:0.1;mem:32")
    seen = _wait_for_line(framework, "TASK_RUNNING")
    # Once the framework's acknowledgements are in: an update unacknowledged at the crash is sent
    # again (at least once, as mesos-agent's; the next test has the end happen meanwhile).
    until(lambda: acknowledged(corral.work_dir) == 2, what="STARTING and RUNNING acknowledged")
    agent.sigkill()
    restarted = joined_agent(master, port=agent.port)
    out = "".join(seen) + _finish(framework)
    assert updates(out) == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"], out
    (container,) = restarted.state()["containers"]
    assert container["statuses"][-1]["state"] == "TASK_FINISHED"


def test_a_task_that_ends_while_the_agent_is_down_reports_its_real_end_once(mesos_master, joined_agent, corral):
    master = mesos_master()
    agent = joined_agent(master)
    until(lambda: joined(master, agent.port))
    framework = master.execute_async("--name=ender", "--checkpoint", "--command=sleep 1; exit 7",
                                     "--resources=cpus:0.1;mem:32")
    seen = _wait_for_line(framework, "TASK_RUNNING")
    until(lambda: acknowledged(corral.work_dir) == 2, what="STARTING and RUNNING acknowledged")
    agent.sigkill()
    time.sleep(2.5)                 # it ends meanwhile; nobody is there to see it
    joined_agent(master, port=agent.port)
    out = "".join(seen) + _finish(framework)
    assert updates(out) == ["TASK_STARTING", "TASK_RUNNING", "TASK_FAILED"], out
    assert "Command exited with status 7" in out


def test_a_non_checkpointing_frameworks_task_ends_with_the_agent(mesos_master, joined_agent):
    master = mesos_master()
    agent = joined_agent(master)
    until(lambda: joined(master, agent.port))
    framework = master.execute_async("--name=fleeting", "--command=sleep 100", "--resources=cpus:0.1;mem:32")
    seen = _wait_for_line(framework, "TASK_RUNNING")
    agent.sigkill()
    out = "".join(seen) + _finish(framework)
    assert updates(out)[-1] in ("TASK_LOST", "TASK_GONE", "TASK_UNREACHABLE"), out
    restarted = joined_agent(master, port=agent.port)
    (container,) = restarted.state()["containers"]
    assert container["statuses"][-1]["state"] == "TASK_KILLED"      # the agent ended it at restart


def test_the_agent_re_registers_with_a_restarted_master(mesos_master, joined_agent):
    master = mesos_master()
    agent = joined_agent(master)
    first = until(lambda: joined(master, agent.port))
    master.stop()
    again = mesos_master(port=master.port)          # an in-memory registry: it knows no agent
    listed = until(lambda: joined(again, agent.port), timeout=60, what="the agent re-registered")
    assert listed["id"] == first["id"]
    done = again.execute("--name=after", "--command=true", "--resources=cpus:0.1;mem:32")
    assert updates(done.stdout)[-1] == "TASK_FINISHED", done.stdout


def test_a_non_checkpointing_frameworks_task_ends_when_the_agent_stops(mesos_master, joined_agent, corral):
    master = mesos_master()
    agent = joined_agent(master)
    until(lambda: joined(master, agent.port))
    framework = master.execute_async("--name=fleeting", "--command=sleep 100", "--resources=cpus:0.1;mem:32")
    _wait_for_line(framework, "TASK_RUNNING")
    checkpointing = master.execute_async("--name=lasting", "--checkpoint", "--command=sleep 100",
                                         "--resources=cpus:0.1;mem:32")
    _wait_for_line(checkpointing, "TASK_RUNNING")
    assert agent.stop() == 0
    running = {entry.split(corral.cgroups_root + "/")[1].split("/")[0] for entry in corral.leftovers()
               if entry.startswith("processes") and "/.supervisors" not in entry}
    assert len(running) == 1, running          # the checkpointing framework's task alone runs on
    framework.kill()
    framework.communicate()
    restarted = joined_agent(master, port=agent.port)
    states = {c["statuses"][-1]["state"] for c in
              restarted.state()["containers"]}
    assert states == {"TASK_KILLED", "TASK_RUNNING"}
    checkpointing.kill()                        # the master then shuts its framework down here
    checkpointing.communicate()
    until(lambda: not [c for c in restarted.state()["containers"]
                       if c["statuses"][-1]["state"] == "TASK_RUNNING"], timeout=60, what="all ended")
