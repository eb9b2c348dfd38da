"""The agent as a real process: SIGKILLed and restarted, with real containers; a damaged
checkpoint with and without --strict; a reboot; --recover=cleanup; a bad flag."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from tests.agent.agentkit import free_port_block
from corral.types import TASK_FAILED, TASK_FINISHED, TASK_KILLED, TASK_LOST, TASK_RUNNING, TASK_STARTING


def launch(container_id, command, **extra):
    return {"type": "LAUNCH_CONTAINER", "launch_container": {
        "container_id": {"value": container_id}, "command": {"value": command}, **extra}}


def by_id(call, container_id):
    return {"type": call, call.lower(): {"container_id": {"value": container_id}}}


def states(agent, container_id):
    [found] = [c for c in agent.state()["containers"] if c["container_id"]["value"] == container_id]
    return [s["state"] for s in found["statuses"]]


def end_all(agent, ids):
    for container_id in ids:
        agent.call(by_id("KILL_CONTAINER", container_id))
        agent.call(by_id("WAIT_CONTAINER", container_id))
        assert agent.call(by_id("REMOVE_CONTAINER", container_id))[0] == 200


def test_sigkilled_idle_agent_with_ten_containers_recovers_every_exit(agent_process, corral):
    agent = agent_process()
    # five end while the agent is down, each with its own status; five keep running
    for i in range(5):
        assert agent.call(launch(f"ends{i}", f"sleep 0.5; exit {i}"))[0] == 200
        assert agent.call(launch(f"runs{i}", "sleep 100"))[0] == 200
    agent.sigkill()
    time.sleep(1.0)
    agent = agent_process()
    for i in range(5):
        status, waited = agent.call(by_id("WAIT_CONTAINER", f"ends{i}"))
        end = waited["wait_container"]
        assert (status, os.WEXITSTATUS(end["exit_status"])) == (200, i)
        assert end["state"] == (TASK_FINISHED if i == 0 else TASK_FAILED)
        assert states(agent, f"ends{i}") == [TASK_STARTING, TASK_RUNNING, end["state"]]     # reported once
        assert states(agent, f"runs{i}") == [TASK_STARTING, TASK_RUNNING]
    agent.sigkill()                       # and again: nothing is reported twice
    agent = agent_process()
    assert states(agent, "ends1") == [TASK_STARTING, TASK_RUNNING, TASK_FAILED]
    end_all(agent, [f"runs{i}" for i in range(5)])
    assert states(agent, "ends1")[-1] == TASK_FAILED
    for i in range(5):
        agent.call(by_id("REMOVE_CONTAINER", f"ends{i}"))
    allocations = json.load(open(os.path.join(corral.work_dir, "meta", "allocations.json")))
    assert allocations == {}
    flags = json.load(open(os.path.join(corral.work_dir, "meta", "flags.json")))
    assert flags["work_dir"] == corral.work_dir and flags["strict"] == "true"
    assert sorted(os.listdir(os.path.join(corral.work_dir, "meta"))) == [
        "agent_id", "allocations.json", "boot_id", "containers", "flags.json", "lock"]


def test_a_damaged_checkpoint_stops_a_strict_agent_and_is_reported_lost_otherwise(agent_process, corral):
    agent = agent_process()
    agent.call(launch("hurt", "sleep 100"))
    agent.call(launch("fine", "sleep 100"))
    agent.sigkill()
    damaged = os.path.join(corral.work_dir, "meta", "containers", "hurt", "statuses.json")
    with open(damaged, "r+") as f:
        f.truncate(10)
    strict = subprocess.run([sys.executable, "-m", "corral.agent.main", f"--work_dir={corral.work_dir}",
                             f"--runtime_dir={corral.runtime_dir}", f"--cgroups_root={corral.cgroups_root}",
                             "--port=1"], capture_output=True, text=True, timeout=30)
    assert strict.returncode == 1
    assert strict.stderr.strip().splitlines() == [f"corral agent: damaged state file {damaged}: not valid JSON "
                                                  f"(Unterminated string starting at: line 1 column 3 (char 2))"]
    agent = agent_process("--strict=false")
    _, waited = agent.call(by_id("WAIT_CONTAINER", "hurt"))
    assert waited["wait_container"]["state"] == TASK_LOST
    assert damaged in waited["wait_container"]["message"]
    assert not os.path.exists(os.path.join(corral.runtime_dir, "containers", "hurt"))    # its remains destroyed
    assert states(agent, "fine") == [TASK_STARTING, TASK_RUNNING]
    end_all(agent, ["fine"])
    agent.call(by_id("REMOVE_CONTAINER", "hurt"))


def test_a_reboot_marks_every_earlier_container_lost(agent_process, corral):
    agent = agent_process()
    agent.call(launch("before", "sleep 100"))
    agent.sigkill()
    with open(os.path.join(corral.work_dir, "meta", "boot_id"), "w") as f:
        f.write("00000000-0000-0000-0000-000000000000\n")
    agent = agent_process()
    _, waited = agent.call(by_id("WAIT_CONTAINER", "before"))
    assert (waited["wait_container"]["state"], waited["wait_container"]["message"]) == (TASK_LOST, "the host rebooted")
    assert not os.path.exists(os.path.join(corral.runtime_dir, "containers", "before"))
    agent.call(by_id("REMOVE_CONTAINER", "before"))


def test_recover_cleanup_destroys_everything_and_exits(agent_process, corral):
    agent = agent_process()
    agent.call(launch("a", "sleep 100"))
    agent.call(launch("b", "true"))
    agent.call(by_id("WAIT_CONTAINER", "b"))
    assert agent.stop() == 0
    assert states_on_disk(corral) == ["a", "b"]          # a stopped agent leaves its containers running
    done = subprocess.run([sys.executable, "-m", "corral.agent.main", f"--work_dir={corral.work_dir}",
                           f"--runtime_dir={corral.runtime_dir}", f"--cgroups_root={corral.cgroups_root}",
                           "--recover=cleanup"], capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stderr) == (0, "")
    assert states_on_disk(corral) == []
    assert os.listdir(os.path.join(corral.runtime_dir, "containers")) == []


def states_on_disk(corral):
    return sorted(os.listdir(os.path.join(corral.work_dir, "meta", "containers")))


def test_a_bad_flag_stops_the_agent_with_one_line():
    done = subprocess.run([sys.executable, "-m", "corral.agent.main", "--port=http"], capture_output=True, text=True,
                          timeout=30)
    assert (done.returncode, done.stderr) == (2, "corral agent: --port=http: is not a port number 1-65535\n")


def test_sigterm_stops_the_agent_and_its_launch_server(agent_process):
    agent = agent_process()
    os.kill(agent.proc.pid, signal.SIGTERM)
    assert agent.proc.wait(10) == 0


def _invariants(agent, corral) -> dict[str, list[str]]:
    """What must hold after any crash: every container the agent reports has one start and at most
    one end; only running ones hold resources; no runtime state or cgroup outside its knowledge.
    A container that ends while we look has its end recorded first and its resources freed after
    its destroy: the resources are given a moment to settle."""
    deadline = time.monotonic() + 5
    while True:
        streams = {c["container_id"]["value"]: [s["state"] for s in c["statuses"]]
                   for c in agent.state()["containers"]}
        running = set()
        for container_id, stream in streams.items():
            assert stream[0] == TASK_STARTING and stream.count(TASK_STARTING) == 1, (container_id, stream)
            ends = [s for s in stream if s in (TASK_FINISHED, TASK_FAILED, TASK_KILLED, TASK_LOST)]
            assert len(ends) <= 1 and (not ends or stream[-1] == ends[0]), (container_id, stream)
            if not ends:
                running.add(container_id)
        allocations = json.load(open(os.path.join(corral.work_dir, "meta", "allocations.json")))
        if set(allocations) == running or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert set(allocations) == running
    runtime = os.path.join(corral.runtime_dir, "containers")
    assert set(os.listdir(runtime) if os.path.exists(runtime) else ()) <= set(streams)
    return streams


def _concurrently(calls) -> None:
    import threading
    threads = [threading.Thread(target=call, daemon=True) for call in calls]
    for thread in threads:
        thread.start()


def _quietly(agent, body):
    def call():
        try:
            agent.call(body, timeout=5)
        except OSError:
            pass        # the agent was killed under it
    return call


def test_sigkill_in_the_middle_of_launches(agent_process, corral):
    launched = set()
    for round_, delay in enumerate((0.005, 0.02, 0.05)):
        agent = agent_process()
        ids = [f"r{round_}-{i}" for i in range(8)]
        launched |= set(ids)
        _concurrently(_quietly(agent, launch(cid, "sleep 100")) for cid in ids)
        time.sleep(delay)
        agent.sigkill()
    agent = agent_process()
    streams = _invariants(agent, corral)
    assert set(streams) <= launched
    for container_id, stream in streams.items():
        assert stream in ([TASK_STARTING, TASK_RUNNING], [TASK_STARTING, TASK_LOST]), (container_id, stream)
    end_all(agent, [cid for cid, stream in streams.items() if stream[-1] == TASK_RUNNING])
    for container_id in streams:
        agent.call(by_id("REMOVE_CONTAINER", container_id))
    assert agent.state()["containers"] == []


def test_sigkill_in_the_middle_of_ends_and_removals(agent_process, corral):
    agent = agent_process()
    ids = [f"e{i}" for i in range(8)]
    for cid in ids:
        agent.call(launch(cid, f"sleep 0.3; exit {ids.index(cid)}"))
    time.sleep(0.3)                   # they end now: the agent records each end and destroys what is left
    agent.sigkill()
    agent = agent_process()
    streams = _invariants(agent, corral)
    for cid in ids:
        _, waited = agent.call(by_id("WAIT_CONTAINER", cid))
        assert os.WEXITSTATUS(waited["wait_container"]["exit_status"]) == ids.index(cid)
    streams = _invariants(agent, corral)
    assert all(stream[-1] in (TASK_FINISHED, TASK_FAILED) for stream in streams.values())

    _concurrently(_quietly(agent, by_id("REMOVE_CONTAINER", cid)) for cid in ids)
    time.sleep(0.01)
    agent.sigkill()                   # in the middle of the removals
    agent = agent_process()
    streams = _invariants(agent, corral)
    for cid in streams:
        assert agent.call(by_id("REMOVE_CONTAINER", cid))[0] == 200
    assert not os.listdir(os.path.join(corral.work_dir, "containers"))


def test_a_launch_checkpointed_without_a_status_file_is_recovered_from_its_container(agent_process, corral):
    """A launch's checkpoint is container.json alone; TASK_RUNNING is not fsynced. A crash can
    thus leave a container with no statuses.json: running if its launch got through, else lost."""
    from corral.agent.checkpoint import Checkpoint
    agent = agent_process()
    assert agent.call(launch("ran", "sleep 100"))[0] == 200
    agent.sigkill()
    meta = os.path.join(corral.work_dir, "meta", "containers")
    os.unlink(os.path.join(meta, "ran", "statuses.json"))             # as if the crash came before it
    Checkpoint(corral.work_dir).add_container("never", {                # checkpointed, never launched
        "config": {"argv": ["sleep", "100"]}, "created": time.time(),
        "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1}, "role": "*"}]})
    agent = agent_process()
    assert states(agent, "ran") == [TASK_STARTING, TASK_RUNNING]
    _, waited = agent.call(by_id("WAIT_CONTAINER", "never"))
    end = waited["wait_container"]
    assert (end["state"], end["message"]) == (TASK_LOST, "the agent stopped before the launch was done")
    assert states(agent, "never") == [TASK_STARTING, TASK_LOST]
    allocations = json.load(open(os.path.join(corral.work_dir, "meta", "allocations.json")))
    assert sorted(allocations) == ["ran"]                  # what the lost one held is free again
    end_all(agent, ["ran"])
    assert agent.call(by_id("REMOVE_CONTAINER", "never"))[0] == 200
    assert os.listdir(meta) == []


def test_a_container_whose_supervisor_died_while_the_agent_was_down_is_lost(agent_process, corral):
    agent = agent_process()
    agent.call(launch("orphaned", "sleep 100"))
    agent.sigkill()
    pids = json.load(open(os.path.join(corral.runtime_dir, "containers", "orphaned", "pids.json")))
    os.kill(pids["supervisor"]["pid"], signal.SIGKILL)      # init dies with it (parent-death signal)
    time.sleep(0.2)
    agent = agent_process()
    _, waited = agent.call(by_id("WAIT_CONTAINER", "orphaned"))
    end = waited["wait_container"]
    assert (end["state"], end["exit_status"]) == (TASK_LOST, None)
    assert "supervisor died" in end["message"]
    assert agent.call(by_id("REMOVE_CONTAINER", "orphaned"))[0] == 200


def test_a_taken_port_and_a_second_agent_on_one_work_dir_are_one_line_each(agent_process, corral, listen):
    agent = agent_process()
    base = [sys.executable, "-m", "corral.agent.main", f"--work_dir={corral.work_dir}", f"--runtime_dir={corral.runtime_dir}",
            f"--cgroups_root={corral.cgroups_root}"]
    second = subprocess.run([*base, "--port=1"], capture_output=True, text=True, timeout=60)
    assert (second.returncode, second.stderr) == (1, f"corral agent: another agent is running on "
                                                     f"{corral.work_dir}/meta (it holds {corral.work_dir}/meta/lock)\n")
    agent.stop()
    taken = free_port_block(1)
    listen(taken)
    busy = subprocess.run([*base, f"--port={taken}"], capture_output=True, text=True, timeout=60)
    assert (busy.returncode, busy.stderr) == (1, f"corral agent: cannot listen on 127.0.0.1:{taken}: "
                                                 f"Address already in use\n")
