"""network/ports with real containers and real listeners: a container may listen on the ports it
was given (and on ports outside the agent's range); listening on another agent port ends it."""

from __future__ import annotations

import asyncio
import os
import sys
import time

import pytest

from corral.containerizers.mesos.containerizer import MesosContainerizer
from corral.types import REASON_CONTAINER_LIMITATION, TASK_FAILED, TASK_KILLED, ContainerConfig, Resources
from corral.isolators import IsolatorFlags
from corral.isolators.network_ports import PortsIsolator

ISOLATION = ["cgroups/cpu", "namespaces/pid", "network/ports"]

# Listen on each (family, port) of argv, say so in the sandbox, then sleep.
LISTENER = """
import os, socket, sys, time
for spec in sys.argv[1:]:
    family, port = spec.split(":")
    s = socket.socket(socket.AF_INET6 if family == "6" else socket.AF_INET)
    s.bind(("::1" if family == "6" else "127.0.0.1", int(port)))
    s.listen()
    globals().setdefault("held", []).append(s)
open(os.path.join(os.environ["MESOS_SANDBOX"], "listening"), "w").close()
time.sleep(60)
"""


def listener(*specs: str, ports=None) -> ContainerConfig:
    return ContainerConfig(argv=[sys.executable, "-I", "-c", LISTENER, *specs], isolation=ISOLATION,
                           resources=Resources(ports=ports))


def _mc(corral, agent_ports, enforce=True) -> MesosContainerizer:
    return MesosContainerizer(corral.work_dir, corral.runtime_dir, corral.cgroups_root, isolation=ISOLATION,
                              container_ports_isolated_range=agent_ports, enforce_container_ports=enforce,
                              container_ports_watch_interval=0.05)


async def _listening(corral, container_id: str) -> None:
    path = os.path.join(corral.work_dir, "containers", container_id, "listening")
    for _ in range(500):
        if os.path.exists(path):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{container_id} never started listening")


@pytest.mark.parametrize("family", ["4", "6"])
def test_listening_on_an_agent_port_it_was_not_given_ends_the_container(corral, port_block, family):
    base = port_block(10)

    async def scenario():
        mc = _mc(corral, [[base, base + 9]])
        await mc.launch("rogue", listener(f"4:{base}", f"{family}:{base + 5}", ports=[[base, base + 1]]))
        started = time.monotonic()
        termination = await asyncio.wait_for(mc.wait("rogue"), 10)
        assert time.monotonic() - started < 5
        assert (termination.state, termination.reason) == (TASK_FAILED, REASON_CONTAINER_LIMITATION)
        assert termination.message == (f"Container rogue is listening on port {base + 5}, "
                                       f"not among the ports it was given ([{base}-{base + 1}])")
        await mc.destroy("rogue", remove_sandbox=True)
        assert not os.listdir(os.path.join(corral.runtime_dir, "isolators", "network-ports"))
    asyncio.run(scenario())


def test_its_own_ports_and_ports_outside_the_agents_range_are_fine(corral, port_block):
    base = port_block(12)

    async def scenario():
        mc = _mc(corral, [[base, base + 9]])
        await mc.launch("good", listener(f"4:{base + 2}", f"6:{base + 3}", f"4:{base + 11}",
                                         ports=[[base + 2, base + 3]]))
        await _listening(corral, "good")
        assert PortsIsolator(mc.sync.flags).listening("good") == {base + 2, base + 3, base + 11}
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(mc.wait("good"), 0.5)     # ten watch intervals, still running
        await mc.kill("good")
        assert (await mc.wait("good")).state == TASK_KILLED
        await mc.destroy("good", remove_sandbox=True)
    asyncio.run(scenario())


def test_without_enforcement_nothing_is_watched(corral, port_block):
    base = port_block(4)

    async def scenario():
        mc = _mc(corral, [[base, base + 3]], enforce=False)
        await mc.launch("free", listener(f"4:{base + 1}"))
        await _listening(corral, "free")
        assert PortsIsolator(mc.sync.flags).limitation("free") is None
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(mc.wait("free"), 0.3)
        enforcing = PortsIsolator(IsolatorFlags(runtime_dir=corral.runtime_dir, cgroups_root=corral.cgroups_root,
                                                container_ports_isolated_range=[[base, base + 3]],
                                                enforce_container_ports=True))
        assert f"listening on port {base + 1}, not among the ports it was given (none)" in \
            enforcing.limitation("free").message          # another process can check a container it did not launch
        await mc.destroy("free", remove_sandbox=True)
    asyncio.run(scenario())


def test_cleanup_tolerates_containers_it_never_prepared(tmp_path):
    PortsIsolator(IsolatorFlags(runtime_dir=str(tmp_path))).cleanup("never")
