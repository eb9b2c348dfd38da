"""Containerizers: the two faces of a containerizer.

base.py's SyncContainerizer is the blocking one, which every containerizer is (mesos/, docker/,
external.py) and the CLI drives. `Containerizer`, here, is the asyncio one, as the agent drives
many containers from one loop: ThreadedContainerizer (threaded.py) puts any SyncContainerizer
behind it, and ComposingContainerizer (composing.py) routes between several. Mesos names:
launch answers LAUNCHED or NOT_SUPPORTED (another containerizer may take the container),
wait resolves with the Termination, destroy kills everything and cleans up.
"""

from __future__ import annotations

import abc
from _signal import SIGKILL    # signal's C core: the signal module imports enum, milliseconds of a cold CLI

from corral.types import ContainerConfig, ExecConfig, InvalidInput, NoSuchContainer, Resources, Termination


class Containerizer(abc.ABC):
    name: str = ""

    @abc.abstractmethod
    async def recover(self) -> list[str]:
        """Re-learn the containers that outlived the previous process; clean up orphans."""

    @abc.abstractmethod
    async def launch(self, container_id: str, config: ContainerConfig) -> str:
        """Start the container: LAUNCHED, or NOT_SUPPORTED when this containerizer does not take it."""

    @abc.abstractmethod
    async def wait(self, container_id: str) -> Termination:
        """Resolve when the container has ended (at once if it already has)."""

    @abc.abstractmethod
    async def kill(self, container_id: str, sig: int = SIGKILL) -> None:
        """Send the container's task a signal."""

    @abc.abstractmethod
    async def destroy(self, container_id: str, remove_sandbox: bool = False) -> Termination:
        """Kill every process of the container, release everything it held and forget it (with
        remove_sandbox, its sandbox too)."""

    @abc.abstractmethod
    async def update(self, container_id: str, resources: Resources) -> None: ...

    @abc.abstractmethod
    async def usage(self, container_id: str) -> dict:
        """ResourceStatistics fields."""

    @abc.abstractmethod
    async def status(self, container_id: str) -> dict: ...

    async def statuses(self, container_ids: list[str]) -> dict[str, dict]:
        """status() of each container that is known, by id (SyncContainerizer.statuses)."""
        found = {}
        for container_id in container_ids:
            try:
                found[container_id] = await self.status(container_id)
            except NoSuchContainer:
                pass
        return found

    @abc.abstractmethod
    async def containers(self) -> list[str]: ...

    async def attach(self, container_id: str):
        """A connection to the container's stdin and output (switchboard.Attachment), or None
        where it holds none (its output is only in its files)."""
        return None

    async def exec(self, container_id: str, config: ExecConfig, stdio: tuple[int, int, int]):
        """Start a command in the running container: an Execution (containerizers/base.py)."""
        raise InvalidInput(f"the {self.name} containerizer cannot run a command in a running container")

    async def healthy(self) -> bool:
        """Whether it can launch now (the agent's GET_HEALTH)."""
        return True

    def close(self) -> None:
        """Let go of what this object holds (threads, a launch server); the containers stay."""
