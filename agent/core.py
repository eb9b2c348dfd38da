"""The agent's core: launch, wait, kill and remove containers, with allocation, checkpoint and
status streams; and recovery after a restart. The HTTP API (agent/api.py) only translates.

    launch:  allocate (refused: nothing happens) -> checkpoint (container.json, durably; it stands
             for TASK_STARTING) -> launch (the Mesos containerizer's through its launch server) ->
             TASK_RUNNING (atomic, not fsynced: recovery finds it again) -> a watcher
    the end: append the terminal status (durably) -> answer the WAITs -> destroy what is left
             (the sandbox stays) -> free the container's resources
    remove:  ended containers only, once released: delete the sandbox, drop the checkpoint

Recovery relies on that order: a container is checkpointed before anything of it exists, its
end is recorded before anything of it goes, and its resources are freed only once it is gone.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter

from corral.containerizers import Containerizer
from corral import types
from corral.files import remove_tree
from corral.types import (LAUNCHED, TASK_LOST, TASK_RUNNING, ContainerConfig, ContainerExists, CorralError, InvalidInput,
                          NoSuchContainer, check_container_id)

from . import custom_resources
from .allocator import Allocator
from .checkpoint import TERMINAL_STATES, Checkpoint
from .ports import HostPorts, port_env
from .resources import DEFAULT_ROLE, Resources

# Mesos's floor for a container's memory (MIN_MEMORY, 32 MB, in its cgroups memory isolator): a
# container asking for less, or for none, is given this much, allocated as it is limited.
MIN_MEMORY_MB = 32.0


def with_minimum_memory(request: Resources) -> Resources:
    """`request` with at least MIN_MEMORY_MB of mem, what is missing taken in the default role."""
    missing = MIN_MEMORY_MB - (request.get("mem") or 0.0)
    return request + Resources({("mem", DEFAULT_ROLE): missing}) if missing > 0 else request


class Agent:
    def __init__(self, flags, containerizer: Containerizer, total: Resources,
                 units: dict[str, list[str]] | None = None):
        """`containerizer`: from agent/containerizer.py's make_containerizer(flags, total), made before any thread;
        `units`: the resources given as whole units, and their names (agent/custom_resources.py)."""
        self.flags = flags
        self.total = total
        self.units = units or {}
        self.checkpoint = Checkpoint(flags.work_dir, flags.strict)
        self.containerizer = containerizer
        self.inputs: set[str] = set()          # containers with an ATTACH_CONTAINER_INPUT stream open (agent/attach.py)
        self.allocator: Allocator | None = None        # made by recover(), from the checkpoint
        self.records: dict[str, dict] = {}             # container id -> its container.json
        self.ends: dict[str, asyncio.Future] = {}      # container id -> its terminal status, once ended
        self.watchers: dict[str, asyncio.Task] = {}    # container id -> the task that waits for its end
        self.launches: dict[str, asyncio.Future] = {}  # container id -> done once its launch is over
        self.removals: dict[str, asyncio.Task] = {}    # container id -> its removal, while one runs
        self._writing = 0                              # durable checkpoint writes in threads now
        self.waiting = 0                               # WAIT calls open now (metrics: corral/waits_open)
        self.agent_id: str | None = None
        self.started = time.time()
        self.counters: Counter[str] = Counter()        # statuses appended, launch errors, since start
        self.tasks = None                              # agent/tasks.Tasks: frameworks' tasks, with --master

    # -- recovery ------------------------------------------------------------------------------

    async def recover(self) -> None:
        """Re-learn everything from the checkpoint; with --strict a damaged file raises DamagedFile.

        Containers that ended while the agent was away report their real end; those the
        containerizer no longer knows, or all of them after a reboot, are lost; containers
        nobody checkpointed are destroyed."""
        self.agent_id = self.checkpoint.agent_id()
        self.checkpoint.write_flags({f["name"]: f["value"] for f in self.flags.to_list()})
        found = self.checkpoint.load()
        # Each container's checkpoint says what it holds: allocations.json only mirrors that, and
        # is written once per turn of the loop, however many allocations changed in it.
        running = {cid: c["container"] for cid, c in found.containers.items() if not _ended(c["statuses"])}
        self.allocator = Allocator(self.total, self.checkpoint.allocations, HostPorts(), durable=False,
                                   defer=asyncio.get_running_loop().call_soon, units=self.units, held={
            cid: Resources.from_json(c.get("resources") or []) for cid, c in running.items()},
            assigned={cid: c["units"] for cid, c in running.items() if c.get("units")})
        alive = set(await self.containerizer.recover())
        for container_id, message in found.damaged.items():
            self.checkpoint.remove_container(container_id)
            self.checkpoint.add_container(container_id, {"config": None, "resources": [], "damaged": message})
            found.containers[container_id] = {"container": {"config": None, "resources": []}, "statuses": [
                self._status(container_id, TASK_LOST, None, f"its checkpoint is damaged: {message}")]}
        # The statuses of those still running in one call: one trip to the containerizer's thread,
        # not one each while the watchers already set up take the loop (and the GIL) from it.
        statuses = {} if found.rebooted else await self.containerizer.statuses(
            [cid for cid, c in found.containers.items() if cid in alive and not _ended(c["statuses"])])
        for container_id, checkpointed in found.containers.items():
            self.records[container_id] = checkpointed["container"]
            stream = checkpointed["statuses"]
            if not _ended(stream) and (found.rebooted or container_id not in alive):
                stream.append(self._status(container_id, TASK_LOST, None, (
                    "the host rebooted" if found.rebooted else
                    "the agent stopped before the launch was done" if len(stream) <= 1 else
                    "its runtime state is gone")))
            if _ended(stream):
                await self._release(container_id, alive)     # again: a release may have been cut short
                continue
            if statuses.get(container_id, {}).get("state") == "RUNNING":
                self._status(container_id, TASK_RUNNING, durable=False)
            self._watch(container_id)        # one it no longer knows is lost: its watcher says so
        for stranger in alive - set(self.records):
            await self.containerizer.destroy(stranger, remove_sandbox=True)    # nobody knows it
        self.allocator.retain(self.ends)                                       # those still running
        self.checkpoint.record_boot()

    async def cleanup(self) -> None:
        """--recover=cleanup: destroy every container and forget it."""
        for container_id in list(self.records):
            watcher = self.watchers.get(container_id)
            if watcher is not None:
                watcher.cancel()
                await asyncio.wait([watcher])
            await self._release(container_id)
            self._forget(container_id)
        self.allocator.flush()

    # -- the calls -----------------------------------------------------------------------------

    async def launch(self, container_id: str, config: ContainerConfig, request: Resources) -> bool:
        """True once launched; False when the id is known already. InsufficientResources,
        InvalidInput: nothing was launched and nothing is held. A caller that goes away (an
        HTTP client hanging up) does not cut the launch short: it goes on to its end."""
        return await _to_its_end(self._launch(container_id, config, request))

    async def _launch(self, container_id: str, config: ContainerConfig, request: Resources) -> bool:
        check_container_id(container_id)
        self._check_containerizer(config)
        if container_id in self.records:
            return False
        # The limits the containerizer would refuse (cpus:1e30 on an agent declaring as much)
        # are refused before anything is held.
        request = with_minimum_memory(request)
        types.Resources(cpus=request.get("cpus"), mem_mb=request.get("mem"))
        given = self.allocator.allocate(container_id, request)
        ports = given.get("ports")
        units = self.allocator.given_units(container_id)
        config.resources = types.Resources(cpus=given.get("cpus"), mem_mb=given.get("mem"),
                                           ports=ports.to_list() if ports else None,
                                           custom=custom_resources.given(given, units) or None)
        config.env = {**config.env, **port_env(ports)}
        record = {"config": config.to_dict(), "resources": given.to_json(), "created": time.time()}
        if units:
            record["units"] = units
        self.records[container_id] = record
        self.ends[container_id] = asyncio.get_running_loop().create_future()   # a WAIT now waits for the launch
        self.launches[container_id] = asyncio.get_running_loop().create_future()   # and so does a KILL
        try:
            await self._durably(self.checkpoint.add_container, container_id, record)
            result = await self.containerizer.launch(container_id, config)
            if result != LAUNCHED:
                raise InvalidInput(f"unsupported container: none of --containerizers="
                                   f"{','.join(self.flags.containerizers)} takes it")
        except BaseException as e:
            self.counters["launch_errors"] += 1
            self._forget(container_id)
            if isinstance(e, ContainerExists):
                raise InvalidInput(f"container {container_id} exists, outside this agent's knowledge") from None
            raise
        finally:
            self.launches.pop(container_id).set_result(None)
        self._status(container_id, TASK_RUNNING, durable=False)     # recovery finds it running again if lost
        self._watch(container_id)
        return True

    async def wait(self, container_id: str) -> dict:
        """The container's end: its terminal status (state, reason, message, exit_status). A
        caller that goes away leaves nothing behind, and the watch goes on."""
        stream = self.statuses(container_id)
        if _ended(stream):
            return stream[-1]
        self.waiting += 1
        try:
            return await asyncio.shield(self.ends[container_id])
        finally:
            self.waiting -= 1

    async def kill(self, container_id: str, sig: int = signal.SIGKILL) -> None:
        """Signal the container's task; a caller that goes away does not cut it short."""
        await _to_its_end(self._kill(container_id, sig))

    async def _kill(self, container_id: str, sig: int) -> None:
        self.statuses(container_id)                     # NoSuchContainer first
        launching = self.launches.get(container_id)
        if launching is not None:
            await asyncio.shield(launching)
        if container_id in self.records and not _ended(self.statuses(container_id)):
            await self.containerizer.kill(container_id, sig)

    async def attach(self, container_id: str, stdin: bool = False):
        """A connection to a running container's switchboard (switchboard.Attachment): its
        output, and its stdin with `stdin`; InvalidInput where there is none to have."""
        self.statuses(container_id)                     # NoSuchContainer first
        launching = self.launches.get(container_id)
        if launching is not None:
            await asyncio.shield(launching)
        config = self.records[container_id].get("config") or {}
        if not (config.get("tty") or config.get("stdin") or config.get("log_max_size")):
            raise InvalidInput(f"container {container_id} has no I/O to attach to: launch it with a tty "
                               "(container.tty_info)")
        if stdin and not (config.get("tty") or config.get("stdin")):
            raise InvalidInput(f"container {container_id} has no stdin: launch it with a tty (container.tty_info)")
        if _ended(self.statuses(container_id)):
            raise InvalidInput(f"container {container_id} has ended: nothing to attach to")
        try:
            attachment = await self.containerizer.attach(container_id)
        except InvalidInput:
            raise
        except (CorralError, OSError):      # it ended meanwhile: its supervisor and socket are gone
            raise InvalidInput(f"container {container_id} has ended: nothing to attach to") from None
        if attachment is None:
            raise InvalidInput(f"container {container_id}'s containerizer cannot attach to it")
        return attachment

    async def remove(self, container_id: str) -> None:
        """Delete an ended container: sandbox, runtime dir, checkpoint; done when all are gone. A
        caller that goes away does not cut it short. Calls while one runs share it: two
        removals of one sandbox at once would trip over each other's deletions."""
        removal = self.removals.get(container_id)
        if removal is None:
            removal = self.removals[container_id] = asyncio.ensure_future(self._remove(container_id))
            removal.add_done_callback(lambda _: self.removals.pop(container_id, None))
        await _to_its_end(removal)

    async def _remove(self, container_id: str) -> None:
        if not _ended(self.statuses(container_id)):
            raise InvalidInput(f"container {container_id} is still running: kill it, wait for it, then remove it")
        watcher = self.watchers.get(container_id)
        if watcher is not None:
            await asyncio.wait([watcher])       # its end is answered before its release is done
        await self._release(container_id)
        # The sandbox, in a thread: it holds whatever the task wrote, and the loop serves on
        # meanwhile. Forgotten only once it is gone: until then the id is taken (a launch of it
        # finds it exists), so no new sandbox of that id is removed with the old one.
        await asyncio.to_thread(remove_tree, os.path.join(self.flags.work_dir, "containers", container_id))
        self._forget(container_id)

    def statuses(self, container_id: str) -> list[dict]:
        if container_id not in self.records:
            raise NoSuchContainer(container_id)
        return self.checkpoint.statuses(container_id)

    async def containers(self) -> list[dict]:
        return [{"container_id": cid, "statuses": self.statuses(cid), "resources": record.get("resources", []),
                 "units": record.get("units") or {}, "config": record.get("config")}
                for cid, record in sorted(self.records.items())]

    # -- helpers -------------------------------------------------------------------------------

    def _check_containerizer(self, config: ContainerConfig) -> None:
        """InvalidInput, before anything is allocated, for a container that no containerizer of
        this agent can take, naming what is missing."""
        enabled = self.flags.containerizers
        if config.containerizer == "docker":
            if "docker" not in enabled:
                raise InvalidInput(f"a DOCKER container needs the docker containerizer: start the agent with "
                                   f"--containerizers={','.join([*enabled, 'docker'])}")
            return
        if "mesos" not in enabled and "external" not in enabled:
            raise InvalidInput(f"a MESOS container needs the mesos (or external) containerizer, and this agent has "
                               f"--containerizers={','.join(enabled)}: start it with mesos too, or launch a "
                               f'DOCKER container ("container": {{"type": "DOCKER", "docker": {{"image": ...}}}})')
        if config.image and [n for n in enabled if n != "docker"][0] == "mesos":     # mesos is asked first
            kind = config.image.get("type", "").lower()
            if kind not in self.flags.image_providers:
                raise InvalidInput(f"{kind} images need --image_providers={kind} (as mesos-agent's)")

    def _watch(self, container_id: str) -> None:
        end = self.ends.get(container_id)
        if end is None:
            end = self.ends[container_id] = asyncio.get_running_loop().create_future()
        self.watchers[container_id] = asyncio.get_running_loop().create_task(self._until_ended(container_id, end))

    async def _until_ended(self, container_id: str, end: asyncio.Future) -> None:
        """Record the end first (that is what must not be lost) and answer its waiters; then release
        what the container held (a REMOVE waits for that)."""
        try:
            try:
                await _after_answers()          # a LAUNCH's answer goes out before the watch is set up
                termination = await self.containerizer.wait(container_id)
                status = await self._durable_status(
                    container_id, termination.state, termination.reason, termination.message,
                    exit_status=termination.exit_status)
            except NoSuchContainer:
                termination, status = None, self._status(container_id, TASK_LOST, None, "its runtime state is gone")
            if not end.done():
                end.set_result(status or self.checkpoint.statuses(container_id)[-1])
            if termination is not None:
                await _after_answers()          # the WAITs' answers go out before the release
                await self._release(container_id)
        except asyncio.CancelledError:
            end.cancel()            # the agent is stopping: the next one watches on
            raise
        except Exception as e:
            if not end.done():
                end.set_exception(e)
            raise
        finally:
            self.ends.pop(container_id, None)
            self.watchers.pop(container_id, None)

    async def _release(self, container_id: str, alive: set[str] | None = None) -> None:
        """Destroy what is left of an ended container (its sandbox stays) and free its resources."""
        if alive is None or container_id in alive:
            try:
                await self.containerizer.destroy(container_id)
            except NoSuchContainer:
                pass
        self.allocator.release(container_id)

    async def _durably(self, write, *args, **kwargs):
        """Run a checkpoint write that fsyncs (two or three fsyncs, 0.2-3 ms each here). With other
        launches or writes under way, in a thread: their fsyncs overlap and the loop serves
        meanwhile (the launch server forked before any thread existed). Alone, inline: there is
        nothing to overlap with, and a thread adds two wakeups (~0.2 ms on a quiet host, more on
        a busy one) to the call's path."""
        if not self._writing and len(self.launches) <= 1:
            return write(*args, **kwargs)
        self._writing += 1
        try:
            return await asyncio.to_thread(write, *args, **kwargs)
        finally:
            self._writing -= 1

    async def _durable_status(self, container_id: str, state: str, *args, **extra) -> dict | None:
        """_status, through _durably (the counting stays on the loop)."""
        status = await self._durably(self.checkpoint.append_status, container_id, state, *args, **extra)
        if status is not None:
            self.counters[state] += 1
        return status

    def _status(self, container_id: str, state: str, *args, **extra) -> dict | None:
        """Append to the container's status stream, and count it (metrics: slave/tasks_<state>)."""
        status = self.checkpoint.append_status(container_id, state, *args, **extra)
        if status is not None:
            self.counters[state] += 1
        return status

    def _forget(self, container_id: str) -> None:
        self.records.pop(container_id, None)
        self.checkpoint.remove_container(container_id)
        self.allocator.release(container_id)
        end = self.ends.pop(container_id, None)
        if end is not None and not end.done():
            end.set_exception(NoSuchContainer(container_id))
            end.exception()         # retrieved: nobody need be waiting


async def _to_its_end(work):
    """Run `work` to its end even if our caller is cancelled (an HTTP client that hangs up); its
    error, if nobody awaits it any more, is taken here rather than logged as never retrieved."""
    task = asyncio.ensure_future(work)
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    return await asyncio.shield(task)


async def _after_answers() -> None:
    """Let the calls that a future just resolved answer first. An API call waits on an agent's
    future through a shield: its wakeup takes two turns of the loop, and the work that follows
    here (a release, a waiter's setup) is synchronous, so without these it would run before the
    answer is sent."""
    for _ in range(2):
        await asyncio.sleep(0)


def _ended(stream: list[dict]) -> bool:
    return bool(stream) and stream[-1]["state"] in TERMINAL_STATES
