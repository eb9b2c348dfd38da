"""MesosContainerizer: the asyncio face of SyncMesosContainerizer.

Launching, killing and reading state are a handful of system calls each and run inline;
waiting never blocks the loop: the supervisor's pidfd and the isolators' watch fds are
registered with the loop, and interval watches are timers.
"""

from __future__ import annotations

import asyncio
import signal

from corral.types import ContainerConfig, CorralError, Resources, Termination

from .. import Containerizer
from .forkserver import LaunchCutShort, LaunchServer
from .sync import SUPERVISOR_EXIT_TIMEOUT, SyncMesosContainerizer, Waiter


class MesosContainerizer(Containerizer):
    """With launch_server=True, launches go through a LaunchServer forked at construction
    (construct it before any thread starts): the way for a process that has threads. The
    server holds `hold` open (the agent's lock) for as long as it runs."""
    name = "mesos"

    def __init__(self, *args, launch_server: bool = False, hold: tuple[int, ...] = (), **kwargs):
        self.sync = SyncMesosContainerizer(*args, **kwargs)
        self.launch_server = None
        if launch_server:
            self.launch_server = LaunchServer(args, kwargs, hold)
            self.launch_server.start()

    async def recover(self) -> list[str]:
        return self.sync.recover()

    async def launch(self, container_id: str, config: ContainerConfig) -> str:
        if self.launch_server is None:
            return self.sync.launch(container_id, config)
        try:
            return await self.launch_server.launch(container_id, config)
        except LaunchCutShort:
            # Every other failed launch undoes itself; this one's server ended (killed) first.
            try:
                await self.destroy(container_id, remove_sandbox=True)
            except (CorralError, OSError):
                pass        # nothing of it was made, or nothing reachable: recovery sees to it
            raise

    async def healthy(self) -> bool:
        return self.launch_server is None or await self.launch_server.healthy()

    def close(self) -> None:
        if self.launch_server is not None:
            self.launch_server.stop()

    async def wait(self, container_id: str) -> Termination:
        with self.sync.waiter(container_id) as waiter:
            return await _until_ended(waiter)

    async def kill(self, container_id: str, sig: int = signal.SIGKILL) -> None:
        self.sync.kill(container_id, sig)

    async def destroy(self, container_id: str, remove_sandbox: bool = False) -> Termination:
        files = self.sync.files(container_id)
        if self.sync.supervisor_alive(files):
            self.sync.end(container_id)
            with self.sync.waiter(container_id) as waiter:
                await asyncio.wait_for(_until_ended(waiter), SUPERVISOR_EXIT_TIMEOUT)
        return self.sync.finish_destroy(files, remove_sandbox)

    async def update(self, container_id: str, resources: Resources) -> None:
        self.sync.update(container_id, resources)

    async def usage(self, container_id: str) -> dict:
        return self.sync.usage(container_id)

    async def status(self, container_id: str) -> dict:
        return self.sync.status(container_id)

    async def containers(self) -> list[str]:
        return self.sync.containers()


async def _until_ended(waiter: Waiter) -> Termination:
    if waiter.result is not None:
        return waiter.result
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[Termination] = loop.create_future()

    readers: set[int] = set()
    timer: list[asyncio.TimerHandle | None] = [None]

    def follow() -> None:
        # The fds change once a container that was still launching has its pids.
        for fd in readers - set(waiter.fds):
            loop.remove_reader(fd)
            readers.discard(fd)
        for fd in set(waiter.fds) - readers:
            loop.add_reader(fd, on_ready, fd)
            readers.add(fd)
        if timer[0] is None and waiter.interval:
            timer[0] = loop.call_later(waiter.interval, on_interval)

    def on_ready(fd):
        try:
            termination = waiter.ready(fd)
        except Exception as e:  # noqa: BLE001 - e.g. the container vanished: the waiter learns it
            if not ended.done():
                ended.set_exception(e)
            return
        if termination is not None and not ended.done():
            ended.set_result(termination)
        elif not ended.done():
            follow()

    def on_interval():
        timer[0] = None
        on_ready(None)

    follow()
    try:
        return await ended
    finally:
        for fd in readers:
            loop.remove_reader(fd)
        if timer[0] is not None:
            timer[0].cancel()
