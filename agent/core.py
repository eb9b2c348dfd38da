"""The agent's core: launch, wait, kill and remove containers, with allocation, checkpoint and
status streams; and recovery after a restart. The HTTP API (agent/api.py) only translates.

    launch:  allocate (refused: nothing happens) -> checkpoint (TASK_STARTING) -> launch through
             the launch server -> TASK_RUNNING -> a watcher that appends the end
    remove:  ended containers only: destroy what is left, delete sandbox and runtime dir, release
             the allocation, drop the checkpoint

The order is what recovery relies on: a container is checkpointed before anything of it exists,
and its allocation is released only after everything of it is gone.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

from containerizers.mesos.containerizer import MesosContainerizer
from corral import types
from corral.files import DamagedFile
from corral.types import (LAUNCHED, TASK_LOST, TASK_RUNNING, ContainerConfig,
                          ContainerExists, InvalidInput, NoSuchContainer, check_container_id)

from .allocator import Allocator
from .checkpoint import TERMINAL_STATES, Checkpoint
from .launchserver import LaunchServer
from .ports import HostPorts, port_env
from .resources import Resources, detect


def containerizer_args(flags, total: Resources) -> dict:
    """SyncMesosContainerizer's arguments from the agent's flags: the agent and its launch server
    must agree on them."""
    ports = total.get("ports")
    return dict(work_dir=flags.work_dir, runtime_dir=flags.runtime_dir, cgroups_root=flags.cgroups_root,
                isolation=flags.isolation, cgroups_enable_cfs=flags.cgroups_enable_cfs,
                container_ports_isolated_range=ports.to_list() if ports else [],
                enforce_container_ports=flags.enforce_container_ports,
                container_ports_watch_interval=flags.container_ports_watch_interval)


class Agent:
    def __init__(self, flags, launch_server: LaunchServer, total: Resources | None = None):
        self.flags = flags
        self.total = total if total is not None else detect(flags.resources or Resources(), flags.work_dir)
        self.checkpoint = Checkpoint(flags.work_dir, flags.strict)
        self.containerizer = MesosContainerizer(**containerizer_args(flags, self.total))
        self.launch_server = launch_server
        self.allocator: Allocator | None = None        # made by recover(), from the checkpoint
        self.records: dict[str, dict] = {}             # container id -> its container.json
        self.watchers: dict[str, asyncio.Task] = {}
        self.agent_id: str | None = None

    # -- recovery ------------------------------------------------------------------------------

    async def recover(self) -> None:
        """Re-learn everything from the checkpoint; with --strict a damaged file raises DamagedFile."""
        self.agent_id = self.checkpoint.agent_id()
        found = self.checkpoint.load()
        try:
            self.allocator = Allocator(self.total, self.checkpoint.allocations, HostPorts())
        except DamagedFile:
            if self.flags.strict:
                raise
            os.unlink(self.checkpoint.allocations)       # rebuilt from the containers' own checkpoints
            self.allocator = Allocator(self.total, self.checkpoint.allocations, HostPorts())
            self.allocator.restore({cid: Resources.from_json(c["container"].get("resources") or [])
                                    for cid, c in found.containers.items()})
        alive = set(await self.containerizer.recover())
        for container_id, message in found.damaged.items():
            await self._destroy_remains(container_id, alive)
            self.checkpoint.remove_container(container_id)
            self.checkpoint.add_container(container_id, {"config": None, "resources": [], "damaged": message})
            self.checkpoint.append_status(container_id, TASK_LOST, None, f"its checkpoint is damaged: {message}")
            self.records[container_id] = {"config": None, "resources": []}
        for container_id, checkpointed in found.containers.items():
            self.records[container_id] = checkpointed["container"]
            stream = checkpointed["statuses"]
            if stream and stream[-1]["state"] in TERMINAL_STATES:
                continue
            if found.rebooted or container_id not in alive:
                await self._destroy_remains(container_id, alive)
                self.checkpoint.append_status(container_id, TASK_LOST, None, (
                    "the host rebooted" if found.rebooted else
                    "the agent stopped before the launch was done" if len(stream) <= 1 else
                    "its runtime state is gone"))
                continue
            if (await self.containerizer.status(container_id))["state"] == "RUNNING":
                self.checkpoint.append_status(container_id, TASK_RUNNING)
            self._watch(container_id)
        for stranger in alive - set(self.records):
            await self.containerizer.destroy(stranger, remove_sandbox=True)    # nobody knows it
        self.allocator.retain(self._holding())
        self.checkpoint.record_boot()

    async def cleanup(self) -> None:
        """--recover=cleanup: destroy every container and forget it."""
        for container_id in list(self.records):
            watcher = self.watchers.pop(container_id, None)
            if watcher is not None:
                watcher.cancel()
            try:
                await self.containerizer.destroy(container_id, remove_sandbox=True)
            except NoSuchContainer:
                pass
            self._forget(container_id)

    def _holding(self) -> list[str]:
        """Containers that still hold their resources: all the agent knows until they are removed."""
        return list(self.records)

    async def _destroy_remains(self, container_id: str, alive: set[str]) -> None:
        if container_id in alive:
            await self.containerizer.destroy(container_id)
            alive.discard(container_id)

    # -- the calls -----------------------------------------------------------------------------

    async def launch(self, container_id: str, config: ContainerConfig, request: Resources) -> bool:
        """True once launched; False when the id is known already. InsufficientResources,
        InvalidInput: nothing was launched and nothing is held."""
        check_container_id(container_id)
        if container_id in self.records:
            return False
        given = self.allocator.allocate(container_id, request)
        ports = given.get("ports")
        config.resources = types.Resources(cpus=given.get("cpus"), mem_mb=given.get("mem"),
                                           ports=ports.to_list() if ports else None)
        config.env = {**port_env(ports), **config.env}
        record = {"config": config.to_dict(), "resources": given.to_json(), "created": time.time()}
        self.records[container_id] = record
        try:
            self.checkpoint.add_container(container_id, record)
            result = await self.launch_server.launch(container_id, config)
        except ContainerExists:
            self._forget(container_id)
            raise InvalidInput(f"container {container_id} exists outside this agent's knowledge") from None
        except BaseException:
            self._forget(container_id)
            raise
        if result != LAUNCHED:
            self._forget(container_id)
            raise InvalidInput("unsupported container: the mesos containerizer takes no images and no other "
                               "containerizer is enabled")
        self.checkpoint.append_status(container_id, TASK_RUNNING)
        self._watch(container_id)
        return True

    async def wait(self, container_id: str) -> dict:
        """The container's end: its terminal status (state, reason, message, exit_status)."""
        stream = self.statuses(container_id)
        if stream and stream[-1]["state"] in TERMINAL_STATES:
            return stream[-1]
        watcher = self.watchers.get(container_id) or self._watch(container_id)
        return await asyncio.shield(watcher)        # a caller that goes away must not end the watcher

    async def kill(self, container_id: str, sig: int = signal.SIGKILL) -> None:
        stream = self.statuses(container_id)
        if stream and stream[-1]["state"] not in TERMINAL_STATES:
            await self.containerizer.kill(container_id, sig)

    async def remove(self, container_id: str) -> None:
        """Delete an ended container: sandbox, runtime dir, allocation, checkpoint."""
        stream = self.statuses(container_id)
        if not stream or stream[-1]["state"] not in TERMINAL_STATES:
            raise InvalidInput(f"container {container_id} is still running: kill it, wait for it, then remove it")
        try:
            await self.containerizer.destroy(container_id, remove_sandbox=True)
        except NoSuchContainer:
            pass
        self._forget(container_id)

    def statuses(self, container_id: str) -> list[dict]:
        if container_id not in self.records:
            raise NoSuchContainer(container_id)
        return self.checkpoint.statuses(container_id)

    async def containers(self) -> list[dict]:
        return [{"container_id": cid, "statuses": self.statuses(cid), "resources": record.get("resources", []),
                 "config": record.get("config")} for cid, record in sorted(self.records.items())]

    # -- helpers -------------------------------------------------------------------------------

    def _watch(self, container_id: str) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(self._until_ended(container_id))
        self.watchers[container_id] = task
        task.add_done_callback(lambda _: self.watchers.pop(container_id, None))
        return task

    async def _until_ended(self, container_id: str) -> dict:
        try:
            termination = await self.containerizer.wait(container_id)
            end = (termination.state, termination.reason, termination.message, termination.exit_status)
        except NoSuchContainer:
            end = (TASK_LOST, None, "its runtime state is gone", None)
        self.checkpoint.append_status(container_id, end[0], end[1], end[2], exit_status=end[3])
        return self.checkpoint.statuses(container_id)[-1]

    def _forget(self, container_id: str) -> None:
        self.records.pop(container_id, None)
        self.checkpoint.remove_container(container_id)
        self.allocator.release(container_id)

