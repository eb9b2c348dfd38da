"""The composing containerizer over the real Mesos, Docker and external containerizers.

The docker SDK and the external programs run on threads, and the Mesos containerizer must not
fork from a process with threads: beside them it launches through its LaunchServer, made
before any thread starts (Stack.make builds the Mesos containerizer first).
"""

from __future__ import annotations

import asyncio

import pytest

from corral.containerizers.composing import ComposingContainerizer
from corral.containerizers.docker import DockerContainerizer
from corral.containerizers.external import ExternalContainerizer
from corral.containerizers.mesos.containerizer import MesosContainerizer
from corral.types import LAUNCHED, NOT_SUPPORTED, TASK_KILLED, ContainerConfig, ContainerExists, NoSuchContainer
from tests.test_external import RUNC_EXAMPLE, program
from tests.threads import only_thread

ACCEPT_ALL = ('case "$1" in launch) sleep "${DELAY:-0}"; echo \'{"result": "LAUNCHED"}\';;\n'
              '  wait|destroy) echo \'{"termination": {"exit_code": 0}, "exit_code": 0}\';;\n'
              '  recover|containers) echo \'{"containers": []}\';;\n  *) echo "{}";; esac\n')
pytestmark = pytest.mark.usefixtures("no_threads_left")     # docker and external run on threads
DECLINE_SLOWLY = 'sleep 1; echo \'{"result": "NOT_SUPPORTED"}\'\n'


class Stack:
    def __init__(self, corral, docker_env, external_path=RUNC_EXAMPLE):
        self.corral, self.docker_env, self.external_path = corral, docker_env, external_path
        self.made: list[ComposingContainerizer] = []

    def make(self, *names: str, program: str | None = None):
        """names: mesos, docker, runc (the runc example), program (an external `program`)."""
        c = self.corral
        made = {
            "mesos": lambda: MesosContainerizer(c.work_dir, c.runtime_dir, c.cgroups_root, launch_server=True),
            "docker": lambda: DockerContainerizer(c.work_dir, c.runtime_dir, socket=self.docker_env.dockerd.url,
                                                  only=len(names) == 1),
            # Two external containerizers side by side need runtime dirs of their own.
            "runc": lambda: ExternalContainerizer(c.work_dir, f"{c.runtime_dir}/runc", self.external_path),
            "program": lambda: ExternalContainerizer(c.work_dir, f"{c.runtime_dir}/program", program),
        }
        built = {name: made[name]() for name in sorted(names, key=lambda n: n != "mesos")}
        self.made.append(ComposingContainerizer([built[name] for name in names]))
        return self.made[-1]


@pytest.fixture
def stack(corral, docker_env):
    stack = Stack(corral, docker_env)
    yield stack
    for composing in stack.made:
        composing.close()


def test_first_that_takes_it_owns_it(stack, docker_env, rootfs, tmp_path):
    async def main():
        cc = stack.make("mesos", "docker", "runc", "program", program=program(tmp_path, "accept", ACCEPT_ALL))
        assert await cc.recover() == []
        assert await cc.launch("plain", ContainerConfig(argv=["sh", "-c", "exit 2"])) == LAUNCHED
        assert await cc.launch("dock", docker_env.config("sh", "-c", "exit 3", containerizer="docker")) == LAUNCHED
        assert await cc.launch("root", ContainerConfig(argv=["sh", "-c", "exit 4"], rootfs=rootfs,
                                                       containerizer="external")) == LAUNCHED
        assert await cc.launch("any", ContainerConfig(argv=["true"], containerizer="external")) == LAUNCHED
        assert await cc.launch("refused", docker_env.config("true", containerizer="appc")) == NOT_SUPPORTED
        assert await cc.containers() == ["any", "dock", "plain", "root"]
        owners = {cid: cc.containerizers.index(cc.owner(cid)) for cid in await cc.containers()}
        assert owners == {"plain": 0, "dock": 1, "root": 2, "any": 3}
        assert (await cc.status("plain"))["containerizer"] == "mesos"
        assert {cid: (await cc.wait(cid)).exit_code for cid in owners} == {"plain": 2, "dock": 3, "root": 4, "any": 0}
        # statuses asks each owner once, for its own; an id nobody owns is left out
        statuses = await cc.statuses([*owners, "nobody"])
        assert {cid: (s["containerizer"], s["state"], s["termination"]["exit_code"]) for cid, s in statuses.items()} == {
            "plain": ("mesos", "EXITED", 2), "dock": ("docker", "EXITED", 3), "root": ("external", "EXITED", 4),
            "any": ("external", "EXITED", 0)}
        with pytest.raises(ContainerExists):
            await cc.launch("dock", ContainerConfig(argv=["true"]))
        for cid in owners:
            await cc.destroy(cid)
        assert await cc.containers() == []
    asyncio.run(main())


def test_the_users_order_decides(stack, rootfs, tmp_path):
    accept = program(tmp_path, "accept", ACCEPT_ALL)
    config = ContainerConfig(argv=["true"], rootfs=rootfs)      # both would take it

    async def main():
        for names in (("runc", "program"), ("program", "runc")):
            cc = stack.make(*names, program=accept)
            await cc.launch("c", config)
            assert cc.owner("c") is cc.containerizers[0]
            await cc.destroy("c")
    asyncio.run(main())


def test_mesos_or_an_external_program_first(stack, tmp_path):
    accept = program(tmp_path, "accept", ACCEPT_ALL)

    async def main():
        for names, owner in ((("mesos", "program"), "mesos"), (("program", "mesos"), "external")):
            cc = stack.make(*names, program=accept)
            await cc.launch("c", ContainerConfig(argv=["true"]))
            assert (await cc.status("c"))["containerizer"] == owner
            await cc.wait("c")
            await cc.destroy("c")
            cc.close()
            assert only_thread()            # so that the next LaunchServer can fork
    asyncio.run(main())


def test_unknown_ids_are_unknown(stack):
    async def main():
        cc = stack.make("runc", "docker")
        for call in (cc.wait("ghost"), cc.kill("ghost"), cc.destroy("ghost"), cc.usage("ghost"), cc.status("ghost")):
            with pytest.raises(NoSuchContainer):
                await call
    asyncio.run(main())


def test_kill_and_usage_go_to_the_owner(stack, docker_env, rootfs):
    async def main():
        cc = stack.make("runc", "docker")
        await cc.launch("m", ContainerConfig(argv=["sleep", "600"], rootfs=rootfs))
        await cc.launch("d", docker_env.config("sleep", "600", containerizer="docker"))
        assert (await cc.usage("m"))["processes"] >= 1
        assert (await cc.usage("d"))["processes"] >= 1
        await cc.kill("d")
        assert (await cc.wait("d")).state == TASK_KILLED
        assert (await cc.status("m"))["state"] == "RUNNING"
        for cid in ("m", "d"):
            await cc.destroy(cid)
    asyncio.run(main())


def test_destroy_during_launch_does_not_try_the_next(stack, rootfs, tmp_path):
    slow_no = program(tmp_path, "slow-no", DECLINE_SLOWLY)

    async def main():
        cc = stack.make("program", "runc", program=slow_no)
        launch = asyncio.ensure_future(cc.launch("c", ContainerConfig(argv=["sleep", "600"], rootfs=rootfs)))
        await asyncio.sleep(0.3)
        termination = await cc.destroy("c")
        assert termination.state == TASK_KILLED
        assert await launch == NOT_SUPPORTED
        assert await cc.containers() == [] and await cc.containerizers[1].containers() == []
    asyncio.run(main())


def test_destroy_during_a_launch_that_succeeds_destroys_it(stack, tmp_path, monkeypatch):
    monkeypatch.setenv("DELAY", "0.5")
    slow_yes = program(tmp_path, "slow-yes", ACCEPT_ALL)

    async def main():
        cc = stack.make("program", "runc", program=slow_yes)
        launch = asyncio.ensure_future(cc.launch("c", ContainerConfig(argv=["true"])))
        await asyncio.sleep(0.2)
        await cc.destroy("c")
        assert await launch == LAUNCHED
        assert await cc.containers() == [] and await cc.containerizers[0].containers() == []
    asyncio.run(main())


def test_recover_merges(stack, docker_env, rootfs):
    async def main():
        first = stack.make("mesos", "runc", "docker")
        await first.launch("m", ContainerConfig(argv=["sh", "-c", "exit 6"]))
        await first.launch("r", ContainerConfig(argv=["sh", "-c", "exit 5"], rootfs=rootfs, containerizer="external"))
        await first.launch("d", docker_env.config("sh", "-c", "exit 7", containerizer="docker"))
        first.close()
        assert only_thread()                # the output copies of "d" end with it, on threads
        again = stack.make("mesos", "runc", "docker")        # a new corral: nothing in memory
        assert await again.recover() == ["d", "m", "r"]
        assert {cid: (await again.wait(cid)).exit_code for cid in ("m", "r", "d")} == {"m": 6, "r": 5, "d": 7}
        for cid in ("m", "r", "d"):
            await again.destroy(cid)
    asyncio.run(main())
