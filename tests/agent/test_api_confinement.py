"""LAUNCH_CONTAINER's confinement: container.linux_info (capabilities with Mesos's rules, seccomp)
and container.rlimit_info, and the agent's confinement flags; bad requests are 400s."""

from __future__ import annotations

import asyncio
import os

import pytest
from tests.agent.agentkit import InProcessAgent
from tests.agent.test_api import by_id, launch

from corral.types import TASK_FINISHED
from corral.isolators.capabilities import DEFAULT, NUMBERS


def mask(*names: str) -> int:
    return sum(1 << NUMBERS[name] for name in names)


async def run_to_end(a, corral, container_id: str, command: str, **container) -> str:
    """Launch, wait, and return the task's stdout; the container is removed."""
    status, body = await a.call(launch(container_id, command, container=container) if container
                                else launch(container_id, command))
    assert status == 200, body
    _, waited = await a.call(by_id("WAIT_CONTAINER", container_id))
    assert waited["wait_container"]["state"] == TASK_FINISHED, waited
    with open(os.path.join(corral.work_dir, "containers", container_id, "stdout")) as f:
        out = f.read()
    assert (await a.call(by_id("REMOVE_CONTAINER", container_id)))[0] == 200
    return out


def capabilities(out: str) -> dict[str, int]:
    return {line.split(":")[0]: int(line.split()[1], 16) for line in out.splitlines() if line.startswith("Cap")}


CAPS = "grep ^Cap /proc/self/status; grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status"


def test_default_and_asked_capabilities_and_rlimits(agent_flags, corral):
    async def scenario():
        async with InProcessAgent(agent_flags()) as a:
            caps = capabilities(await run_to_end(a, corral, "default", CAPS))
            assert caps["CapEff"] == caps["CapBnd"] == mask(*DEFAULT) and caps["CapAmb"] == 0
            # Effective alone: the bounding set is the same (Mesos's rule).
            caps = capabilities(await run_to_end(a, corral, "raw", CAPS, type="MESOS", linux_info={
                "effective_capabilities": {"capabilities": ["NET_RAW"]}}))
            assert caps["CapEff"] == caps["CapBnd"] == mask("NET_RAW")
            # Effective narrower than bounding: root keeps only the effective ones across exec.
            caps = capabilities(await run_to_end(a, corral, "narrow", CAPS, linux_info={
                "effective_capabilities": {"capabilities": ["CHOWN"]},
                "bounding_capabilities": {"capabilities": ["CHOWN", "KILL"]}}))
            assert (caps["CapEff"], caps["CapBnd"]) == (mask("CHOWN"), mask("CHOWN", "KILL")), caps
            out = await run_to_end(a, corral, "limits", "ulimit -n; ulimit -Hn", rlimit_info={
                "rlimits": [{"type": "RLMT_NOFILE", "soft": 100, "hard": 200}]})
            assert out.split() == ["100", "200"]
            out = await run_to_end(a, corral, "unconfined", CAPS, linux_info={"seccomp": {"unconfined": True}})
            assert "Seccomp:\t0" in out
    asyncio.run(scenario())


@pytest.mark.parametrize("container, message", [
    ({"linux_info": {"effective_capabilities": {"capabilities": ["SYS_ADMIN"]}}},
     "effective capabilities beyond the agent's bounding set: SYS_ADMIN"),
    ({"linux_info": {"bounding_capabilities": {"capabilities": ["SYS_MODULE"]}}},
     "bounding capabilities beyond the agent's bounding set: SYS_MODULE"),
    ({"linux_info": {"effective_capabilities": {"capabilities": ["KILL", "CHOWN"]},
                     "bounding_capabilities": {"capabilities": ["KILL"]}}},
     "effective capabilities beyond the bounding set: CHOWN"),
    ({"linux_info": {"effective_capabilities": {"capabilities": ["WARP"]}}}, "unknown capability 'WARP'"),
    ({"linux_info": {"effective_capabilities": ["KILL"]}}, "effective_capabilities\" must be a JSON object"),
    ({"linux_info": {"seccomp": {"profile_name": "../x"}}}, 'container.linux_info.seccomp" needs'),
    ({"linux_info": {"seccomp": {"profile_name": "x.json"}}}, "needs the agent's --seccomp_config_dir"),
    ({"rlimit_info": {"rlimits": [{"type": "RLMT_WARP"}]}}, "unknown rlimit type 'RLMT_WARP'"),
    ({"rlimit_info": {"rlimits": [{"type": "RLMT_NOFILE", "soft": 10}]}}, "give both soft and hard"),
    ({"rlimit_info": {"rlimits": [{"type": "RLMT_NOFILE", "soft": 10, "hard": 5}]}}, "soft <= hard"),
    ({"rlimit_info": {"rlimits": [{"type": ["RLMT_NOFILE"]}]}}, "unknown rlimit type ['RLMT_NOFILE']"),
    ({"rlimit_info": {"rlimits": [{"type": "RLMT_NOFILE", "soft": 2**64, "hard": 2**64}]}}, "soft <= hard"),
])
def test_bad_confinement_requests_are_400(agent_flags, corral, container, message):
    async def scenario():
        async with InProcessAgent(agent_flags()) as a:
            status, body = await a.call(launch("bad", "true", container=container))
            assert status == 400 and message in str(body), (status, body)
            assert not corral.sync().containers()
    asyncio.run(scenario())


def test_agent_flags_widen_and_set_defaults(agent_flags, corral, tmp_path):
    (tmp_path / "allow.json").write_text('{"defaultAction": "SCMP_ACT_ALLOW"}')

    async def scenario():
        async with InProcessAgent(agent_flags(
                '--bounding_capabilities={"capabilities": ["CHOWN", "SYS_ADMIN"]}',
                '--effective_capabilities={"capabilities": ["CHOWN"]}', f"--seccomp_config_dir={tmp_path}",
                "--cgroups_pids_limit=7")) as a:
            caps = capabilities(await run_to_end(a, corral, "agent-default", CAPS))
            assert (caps["CapEff"], caps["CapBnd"]) == (mask("CHOWN"), mask("CHOWN", "SYS_ADMIN")), caps
            caps = capabilities(await run_to_end(a, corral, "admin", CAPS, linux_info={
                "effective_capabilities": {"capabilities": ["SYS_ADMIN"]}}))
            assert caps["CapEff"] == mask("SYS_ADMIN")
            out = await run_to_end(a, corral, "named", CAPS + "; cat /sys/fs/cgroup/pids$(grep pids "
                                   "/proc/self/cgroup | cut -d: -f3)/pids.max",
                                   linux_info={"seccomp": {"profile_name": "allow.json"}})
            assert "Seccomp:\t2" in out and out.split()[-1] == "7"
    asyncio.run(scenario())
