"""The composing containerizer: a plain router over several containerizers, in the user's order.

launch asks each in turn; the first that does not answer NOT_SUPPORTED owns the container, and
wait, kill, destroy, update, usage, status and exec go to the owner alone (statuses to each
owner, for its own ids). (Mesos sorts its containerizers; corral keeps the order it was given.)
An id nobody owns is NoSuchContainer.
A destroy that arrives while a launch is under way stops the launch from trying the next
containerizer, waits for the one being asked to answer, and destroys the container if it took
it. recover runs every containerizer and merges what they know.
"""

from __future__ import annotations

import asyncio
import signal

from corral.types import (NOT_SUPPORTED, TASK_KILLED, ContainerConfig, ContainerExists, CorralError, ExecConfig,
                          NoSuchContainer, Resources, Termination)

from . import Containerizer


class ComposingContainerizer(Containerizer):
    name = "composing"

    def __init__(self, containerizers: list[Containerizer]):
        if not containerizers:
            raise CorralError("the composing containerizer needs at least one containerizer")
        self.containerizers = list(containerizers)
        self._owners: dict[str, Containerizer] = {}
        self._launching: dict[str, _Launch] = {}

    def close(self) -> None:
        for containerizer in self.containerizers:
            containerizer.close()

    def owner(self, container_id: str) -> Containerizer:
        owner = self._owners.get(container_id)
        if owner is None:
            raise NoSuchContainer(container_id)
        return owner

    async def recover(self) -> list[str]:
        recovered = await asyncio.gather(*(c.recover() for c in self.containerizers))
        for containerizer, ids in zip(self.containerizers, recovered):
            for container_id in ids:
                self._owners.setdefault(container_id, containerizer)
        return sorted(self._owners)

    async def launch(self, container_id: str, config: ContainerConfig) -> str:
        if container_id in self._owners or container_id in self._launching:
            raise ContainerExists(container_id)
        launch = self._launching[container_id] = _Launch()
        try:
            for containerizer in self.containerizers:
                result = await containerizer.launch(container_id, config)
                if result != NOT_SUPPORTED:
                    self._owners[container_id] = containerizer
                    return result
                if launch.destroying:
                    break
            return NOT_SUPPORTED
        finally:
            del self._launching[container_id]
            launch.done.set()

    async def wait(self, container_id: str) -> Termination:
        return await self.owner(container_id).wait(container_id)

    async def kill(self, container_id: str, sig: int = signal.SIGKILL) -> None:
        await self.owner(container_id).kill(container_id, sig)

    async def destroy(self, container_id: str, remove_sandbox: bool = False) -> Termination:
        launch = self._launching.get(container_id)
        if launch is not None:
            launch.destroying = True
            await launch.done.wait()
            if container_id not in self._owners:
                return Termination(container_id, None, TASK_KILLED, None,
                                   "destroyed before any containerizer took it")
        termination = await self.owner(container_id).destroy(container_id, remove_sandbox)
        self._owners.pop(container_id, None)
        return termination

    async def update(self, container_id: str, resources: Resources) -> None:
        await self.owner(container_id).update(container_id, resources)

    async def usage(self, container_id: str) -> dict:
        return await self.owner(container_id).usage(container_id)

    async def status(self, container_id: str) -> dict:
        return await self.owner(container_id).status(container_id)

    async def statuses(self, container_ids: list[str]) -> dict[str, dict]:
        """Each owner's in one call, the owners side by side; an id nobody owns is left out."""
        owned: dict[Containerizer, list[str]] = {}
        for container_id in container_ids:
            if container_id in self._owners:
                owned.setdefault(self._owners[container_id], []).append(container_id)
        found = await asyncio.gather(*(owner.statuses(ids) for owner, ids in owned.items()))
        return {cid: status for each in found for cid, status in each.items()}

    async def containers(self) -> list[str]:
        return sorted(self._owners)

    async def attach(self, container_id: str):
        return await self.owner(container_id).attach(container_id)

    async def exec(self, container_id: str, config: ExecConfig, stdio: tuple[int, int, int]):
        return await self.owner(container_id).exec(container_id, config, stdio)

    async def healthy(self) -> bool:
        return all([await c.healthy() for c in self.containerizers])


class _Launch:
    """A launch under way: whether a destroy asked it to stop, and when it is over."""

    def __init__(self):
        self.destroying = False
        self.done = asyncio.Event()
