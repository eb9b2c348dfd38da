"""Containerizers: the Containerizer interface that every containerizer implements.

The interface is asyncio, as the agent drives many containers from one loop. Mesos names:
launch answers LAUNCHED or NOT_SUPPORTED (another containerizer may take the container),
wait resolves with the Termination, destroy kills everything and cleans up.
"""

from __future__ import annotations

import abc
import signal

from corral.types import ContainerConfig, Resources, Termination


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
    async def kill(self, container_id: str, sig: int = signal.SIGKILL) -> None:
        """Send the container's task a signal."""

    @abc.abstractmethod
    async def destroy(self, container_id: str) -> Termination:
        """Kill every process of the container and release everything it held."""

    @abc.abstractmethod
    async def update(self, container_id: str, resources: Resources) -> None: ...

    @abc.abstractmethod
    async def usage(self, container_id: str) -> dict:
        """ResourceStatistics fields."""

    @abc.abstractmethod
    async def status(self, container_id: str) -> dict: ...

    @abc.abstractmethod
    async def containers(self) -> list[str]: ...

    async def healthy(self) -> bool:
        """Whether it can launch now (the agent's GET_HEALTH)."""
        return True
