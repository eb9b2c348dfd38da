"""The agent over the external containerizer (tests/agent/host-containerizer: tasks as host
processes under a shim), as a real process: launch, wait, kill, remove, and a SIGKILLed agent
that re-attaches its running container and reports the exit of one that ended meanwhile."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from corral.types import TASK_FAILED, TASK_KILLED, TASK_RUNNING, TASK_STARTING

PROGRAM = str(Path(__file__).with_name("host-containerizer"))


def launch(container_id, command, resources=()):
    return {"type": "LAUNCH_CONTAINER", "launch_container": {
        "container_id": {"value": container_id}, "command": {"value": command}, "resources": list(resources)}}


def by_id(call, container_id):
    return {"type": call, call.lower(): {"container_id": {"value": container_id}}}


def statuses(agent, container_id):
    [found] = [c for c in agent.state()["containers"] if c["container_id"]["value"] == container_id]
    return [s["state"] for s in found["statuses"]]


def test_external_containers_through_the_agent_and_its_restart(agent_process, corral):
    flags = ["--containerizers=external", f"--external_containerizer_path={PROGRAM}",
             "--external_containerizer_timeout=10secs"]
    agent = agent_process(*flags)
    ports = {"name": "ports", "type": "SCALAR", "scalar": {"value": 1}}
    assert agent.call(launch("ends", 'echo "port $PORT0"; sleep 1; exit 3', [ports]))[0] == 200
    assert agent.call(launch("runs", "sleep 100"))[0] == 200
    shim_state = Path(corral.runtime_dir, "external", "program")
    runs_pid = int((shim_state / "runs" / "pid").read_text())
    agent.sigkill()
    time.sleep(1.5)             # "ends" ends while no agent watches

    agent = agent_process(*flags)
    status, waited = agent.call(by_id("WAIT_CONTAINER", "ends"))
    assert status == 200 and waited["wait_container"]["state"] == TASK_FAILED
    assert os.WEXITSTATUS(waited["wait_container"]["exit_status"]) == 3
    sandbox = Path(corral.work_dir, "containers", "ends")
    port = int((sandbox / "stdout").read_text().split()[1])
    given = {c["container_id"]["value"]: c["resources"] for c in agent.state()["containers"]}
    assert [r["ranges"]["range"] for r in given["ends"] if r["name"] == "ports"] == [[{"begin": port, "end": port}]]

    assert statuses(agent, "runs") == [TASK_STARTING, TASK_RUNNING]         # re-attached, not relaunched
    assert int((shim_state / "runs" / "pid").read_text()) == runs_pid and os.path.exists(f"/proc/{runs_pid}")
    assert agent.call(by_id("KILL_CONTAINER", "runs"))[0] == 200
    # As a client polling the status stream may: remove it the moment its end shows, while the
    # agent is still destroying it (the program's destroy takes 0.2 s and fails if run twice at once).
    deadline = time.monotonic() + 10
    while statuses(agent, "runs")[-1] != TASK_KILLED:
        assert time.monotonic() < deadline, statuses(agent, "runs")
        time.sleep(0.01)
    removed = agent.call(by_id("REMOVE_CONTAINER", "runs"))
    assert removed[0] == 200, removed
    assert agent.call(by_id("WAIT_CONTAINER", "runs"))[0] == 404
    assert agent.call(by_id("REMOVE_CONTAINER", "ends"))[0] == 200
    for container_id in ("ends", "runs"):
        assert not Path(corral.work_dir, "containers", container_id).exists()
    assert not os.path.exists(f"/proc/{runs_pid}") or "Z" in open(f"/proc/{runs_pid}/stat").read().split()[2]
    assert os.listdir(shim_state) == [] and agent.state()["containers"] == []
    assert json.load(open(os.path.join(corral.work_dir, "meta", "allocations.json"))) == {}
