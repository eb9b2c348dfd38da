"""ThreadedContainerizer: the asyncio face of any blocking containerizer (base.SyncContainerizer).

Every call of the blocking containerizer runs off the loop. Short calls run on a small pool of
this containerizer's own; a wait or a destroy, which can last as long as a container takes to
end, gets a thread of its own, so a thousand waiting containers never starve a kill or a usage.
The loop itself never blocks. (asyncio is imported where it is used: the CLI imports this
module's neighbours for their blocking classes, and asyncio alone costs it 50-90 ms.)

With threads=False every call runs inline instead: for a process that forks its containers
itself (the Mesos containerizer without a launch server), which must keep a single thread.
"""

from __future__ import annotations

import functools
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

from corral.types import ContainerConfig, ExecConfig, Resources, Termination

from . import Containerizer


class ThreadedContainerizer(Containerizer):

    def __init__(self, sync, max_workers: int = 16, threads: bool = True):
        self.sync = sync
        self.name = sync.name
        self.capabilities = sync.capabilities
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix=f"corral-{sync.name}") if threads else None

    async def call(self, fn, *args, **kwargs):
        """fn(*args) on the pool: for calls that return in about the time a system call or dockerd takes."""
        if self._pool is None:
            return fn(*args, **kwargs)
        import asyncio
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    async def call_long(self, fn, *args, **kwargs):
        """fn(*args) on a thread of its own: for calls that block until a container ends."""
        if self._pool is None:
            return fn(*args, **kwargs)
        import asyncio
        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def settle(result, error):
            if not future.done():
                future.set_exception(error) if error is not None else future.set_result(result)

        def target():
            try:
                result = fn(*args, **kwargs)
            except BaseException as e:  # noqa: BLE001 - handed to the awaiting coroutine
                loop.call_soon_threadsafe(settle, None, e)
            else:
                loop.call_soon_threadsafe(settle, result, None)
        threading.Thread(target=target, name=f"corral-{getattr(fn, '__name__', 'call')}", daemon=True).start()
        return await future

    def close(self) -> None:
        """Let the pool's threads go: queued calls are dropped, those under way finish on their
        own (a stopping agent does not wait for a docker pull)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def recover(self) -> list[str]:
        return await self.call(self.sync.recover)

    async def launch(self, container_id: str, config: ContainerConfig) -> str:
        return await self.call(self.sync.launch, container_id, config)

    async def wait(self, container_id: str) -> Termination:
        return await self.call_long(self.sync.wait, container_id)

    async def kill(self, container_id: str, sig: int = signal.SIGKILL) -> None:
        await self.call(self.sync.kill, container_id, sig)

    async def destroy(self, container_id: str, remove_sandbox: bool = False) -> Termination:
        return await self.call_long(self.sync.destroy, container_id, remove_sandbox)

    async def update(self, container_id: str, resources: Resources) -> None:
        await self.call(self.sync.update, container_id, resources)

    async def usage(self, container_id: str) -> dict:
        return await self.call(self.sync.usage, container_id)

    async def status(self, container_id: str) -> dict:
        return await self.call(self.sync.status, container_id)

    async def statuses(self, container_ids: list[str]) -> dict[str, dict]:
        return await self.call(self.sync.statuses, container_ids)

    async def containers(self) -> list[str]:
        return await self.call(self.sync.containers)

    async def attach(self, container_id: str):
        return await self.call(self.sync.attach, container_id)

    async def exec(self, container_id: str, config: ExecConfig, stdio: tuple[int, int, int]):
        return await self.call(self.sync.exec, container_id, config, stdio)
