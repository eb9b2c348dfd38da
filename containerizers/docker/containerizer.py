"""DockerContainerizer: the docker containerizer's asyncio face, for the agent.

Every blocking call of SyncDockerContainerizer runs on a thread; dockerd outages are waited
out; each container's output is copied into its sandbox's stdout and stderr as long as it runs,
as Mesos's docker executor does.
"""

from __future__ import annotations

import asyncio
import logging

from corral.types import LAUNCHED, ContainerConfig, CorralError, InvalidInput, NoSuchContainer, Termination

from ..threaded import ThreadedContainerizer
from .engine import DockerUnavailable
from .sync import SyncDockerContainerizer

log = logging.getLogger(__name__)


class DockerContainerizer(ThreadedContainerizer):
    """The asyncio face: every call to dockerd on a thread; dockerd outages are waited out."""

    RETRY_INTERVAL = 1.0
    OUTPUT_GRACE = 10.0         # how long an ended container's output may take to reach the sandbox

    def __init__(self, *args, **kwargs):
        super().__init__(SyncDockerContainerizer(*args, **kwargs))
        self._copies: dict = {}            # container id -> the asyncio.Task copying its output

    async def launch(self, container_id: str, config: ContainerConfig) -> str:
        result = await super().launch(container_id, config)
        if result == LAUNCHED:
            self._copy(container_id)
        return result

    async def recover(self) -> list[str]:
        known = await super().recover()
        for container_id in known:
            self._copy(container_id)
        return known

    async def wait(self, container_id: str) -> Termination:
        """The container's end, once its whole output is in the sandbox. A dockerd that is down
        or restarting is waited for, then re-read."""
        while True:
            try:
                termination = await self.call_long(self.sync.wait, container_id)
                break
            except DockerUnavailable as e:
                log.warning("waiting on container %s: %s; retrying", container_id, e)
                await asyncio.sleep(self.RETRY_INTERVAL)
        copy = self._copies.get(container_id)
        if copy is not None:
            # dockerd's output stream ends a moment after the container: whoever hears of the end
            # (a WAIT, then a REMOVE that deletes the sandbox) must find stdout and stderr whole.
            await asyncio.wait([copy], timeout=self.OUTPUT_GRACE)
        return termination

    async def destroy(self, container_id: str, remove_sandbox: bool = False) -> Termination:
        # The copy stops first: dockerd is about to forget the container it reads from.
        copy = self._copies.pop(container_id, None)
        if copy is not None:
            copy.cancel()
        return await super().destroy(container_id, remove_sandbox)

    async def attach(self, container_id: str):
        # The agent's ATTACH_CONTAINER_* calls speak the Mesos switchboard's frames (agent/attach.py);
        # dockerd's attach stream is not translated to them.
        self.sync.files(container_id)
        raise InvalidInput(f"container {container_id} is run by dockerd: the agent does not attach to docker "
                           "containers (corral attach on the agent's host does)")

    def close(self) -> None:
        for copy in self._copies.values():
            copy.cancel()
        super().close()

    def _copy(self, container_id: str) -> None:
        """Keep the sandbox's stdout and stderr current, as long as the container runs."""

        async def copy():
            while True:
                try:
                    await self.call_long(self.sync.copy_output, container_id)
                    if not await self.call(self.sync.running, self.sync.files(container_id)):
                        return
                except NoSuchContainer:
                    return
                except CorralError as e:
                    log.warning("copying the output of container %s: %s", container_id, e)
                await asyncio.sleep(self.RETRY_INTERVAL)     # a dockerd restart ended the stream early
        self._copies[container_id] = asyncio.get_running_loop().create_task(copy())


