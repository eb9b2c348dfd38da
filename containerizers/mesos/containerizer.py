"""MesosContainerizer: the asyncio face of SyncMesosContainerizer.

A ThreadedContainerizer, with two things of its own. Launches go through a launch server, a
single-threaded process forked at construction (forkserver.py): the way for a process that has
threads. And a wait costs no thread: the supervisor's pidfd and the isolators' watch fds are
registered with the loop, and interval watches are timers (destroy's wait too; the rest of a
destroy is a short call on the pool, or inline where it cannot wait). Without a launch server (a program that keeps a single
thread) every call runs inline, as the launcher must fork from such a process.
"""

from __future__ import annotations

import asyncio

from corral.types import ContainerConfig, CorralError, Termination

from ..base import STOP_TIMEOUT
from ..threaded import ThreadedContainerizer
from .forkserver import LaunchCutShort, LaunchServer
from .sync import SyncMesosContainerizer
from .waiter import Waiter


class MesosContainerizer(ThreadedContainerizer):
    """With launch_server=True, construct it before any thread starts. The server holds `hold`
    open (the agent's lock) for as long as it runs."""

    def __init__(self, *args, launch_server: bool = False, hold: tuple[int, ...] = (), **kwargs):
        self.launch_server = None
        if launch_server:
            self.launch_server = LaunchServer(args, kwargs, hold)
            self.launch_server.start()
        super().__init__(SyncMesosContainerizer(*args, **kwargs), threads=launch_server)

    async def launch(self, container_id: str, config: ContainerConfig) -> str:
        if self.launch_server is None:
            return await super().launch(container_id, config)
        try:
            return await self.launch_server.launch(container_id, config)
        except LaunchCutShort:
            # Every other failed launch undoes itself; this one's server ended (killed) first.
            try:
                await self.destroy(container_id, remove_sandbox=True)
            except (CorralError, OSError):
                pass        # nothing of it was made, or nothing reachable: recovery sees to it
            raise

    async def recover(self) -> list[str]:
        """Inline, as statuses(): the agent recovers before it serves anything, so the loop has
        nothing else to do meanwhile, and on a loaded host each trip to the pool and back (two
        thread wakeups) costs more than these reads of the containers' files."""
        return self.sync.recover()

    async def statuses(self, container_ids: list[str]) -> dict[str, dict]:
        return self.sync.statuses(container_ids)

    async def healthy(self) -> bool:
        return self.launch_server is None or await self.launch_server.healthy()

    def close(self) -> None:
        super().close()
        if self.launch_server is not None:
            self.launch_server.stop()

    async def wait(self, container_id: str) -> Termination:
        with self.sync.waiter(container_id) as waiter:
            return await _until_ended(waiter)

    async def destroy(self, container_id: str, remove_sandbox: bool = False) -> Termination:
        """The sync destroy's steps, its wait for the SIGKILL's end done here, on the loop, as
        every wait: the waits already under way hear of the end before the container's files go.
        The rest (finish_destroy: the isolators' cleanup, the cgroups' removal and its retries,
        the files) runs on the pool, as other short calls do (a thread started per destroy held
        the loop ~2 ms each when a burst of containers ended at once), except where nothing of
        it can wait (_quick): then here, as the trip to the pool and back, two thread wakeups,
        costs more than the work (~3 ms of an agent's round trip on a busy 2-core host). A
        container still running STOP_TIMEOUT after its SIGKILL gets the sync destroy on the
        pool: it is waited for once more there, bounded by the same timeout."""
        files = self.sync.files(container_id)
        if self.sync.stop(files):
            try:
                await asyncio.wait_for(self.wait(container_id), STOP_TIMEOUT)
            except asyncio.TimeoutError:
                return await self.call(self.sync.destroy, container_id, remove_sandbox)
        if self._pool is not None and not self._quick(files, remove_sandbox):
            return await self.call(self.sync.finish_destroy, files, remove_sandbox)
        return self.sync.finish_destroy(files, remove_sandbox)

    def _quick(self, files, remove_sandbox: bool) -> bool:
        """Whether the rest of a destroy is a few rmdirs that succeed at once and a small runtime
        dir (well under a millisecond): no process is left in its cgroups (an rmdir would retry
        until the last has exited), the supervisor has exited (finish_destroy waits for it:
        Launcher.await_exit), no image's rootfs is to go, and the sandbox stays (it may hold any
        amount of the task's files): what the agent's release of an ended container usually
        finds. Processes still exiting (a SIGKILL's, say) send it to the pool."""
        try:
            return not (remove_sandbox or self.sync.launcher.pids(files.container_id)
                        or self.sync.supervisor_alive(files) or files.launch_record()["config"].get("image"))
        except (FileNotFoundError, CorralError):
            return False        # a launch cut short: the pool's destroy sees to it


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
