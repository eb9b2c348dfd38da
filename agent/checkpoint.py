"""The agent's checkpoint: everything it must not forget across a restart, under <work-dir>/meta.

    meta/agent_id                          the agent's id, made once
    meta/boot_id                           the host's boot id when the agent last started
    meta/flags.json                        the flags it runs with
    meta/allocations.json                  what each container holds (agent.allocator.Allocator)
    meta/containers/<id>/container.json    the launch: config, resources given (and "units": which GPUs), containerizer
    meta/containers/<id>/statuses.json     the status stream: TASK_STARTING, TASK_RUNNING, then one end

Every write is atomic: temp file, fsync, rename, fsync of the directory (a new directory's
parent too); only TASK_RUNNING is written without the fsyncs (durable=False), since recovery
finds a running container running again. A launch's checkpoint is container.json alone, written
durably before anything of the container exists: its stream begins with TASK_STARTING without a
write of its own, so a container.json without statuses.json reads as [TASK_STARTING] (at the
container's "created" time). That makes a launch three fsyncs (the file, its new directory, the
parent) and an end two (the file, the directory).

The streams are kept in memory once read or written (the agent is their only writer: it holds
meta/lock), so appending a status reads nothing back.

A file that cannot be read back is a DamagedFile naming it; `load` raises it with strict, and
without strict reports that container as damaged for the agent to mark lost and destroy.
"""

from __future__ import annotations

import fcntl
import os
import time
import uuid

from corral import linux
from corral.files import DamagedFile, read_json, read_text, remove_tree, spread_subdirectories, write_atomic, write_json
from corral.record import Record
from corral.types import TASK_FAILED, TASK_FINISHED, TASK_KILLED, TASK_LOST, TASK_RUNNING, TASK_STARTING, CorralError

TERMINAL_STATES = frozenset({TASK_FINISHED, TASK_FAILED, TASK_KILLED, TASK_LOST})
STATES = TERMINAL_STATES | {TASK_STARTING, TASK_RUNNING}


class Recovered(Record):
    """What `load` found: the containers checkpointed whole, and the damaged ones (without strict)."""
    containers: dict = dict         # id -> {"container": container.json's value, "statuses": [...]}
    damaged: dict = dict            # id -> what is wrong, naming the file
    incomplete: list = list         # ids whose checkpoint was cut short before any launch began
    rebooted: bool = False          # the boot id changed: every container from before is gone


class Checkpoint:
    def __init__(self, work_dir: str, strict: bool = True):
        self.meta = os.path.join(work_dir, "meta")
        self.strict = strict
        self._streams: dict[str, list[dict]] = {}      # container id -> its stream, as on disk

    def path(self, *names: str) -> str:
        return os.path.join(self.meta, *names)

    def _container_dir(self, container_id: str) -> str:
        return self.path("containers", container_id)

    # -- the agent ----------------------------------------------------------------------------

    def lock(self, timeout: float = 3.0) -> int:
        """Hold the work dir: one agent at a time. The lock lives as long as any copy of the fd:
        the launch server forked from the agent shares it, so a restarted agent waits until the
        previous one's server has finished the launch it was in (supervisors close it at once)."""
        makedirs_durable(self.meta)
        fd = os.open(self.path("lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise CorralError(f"another agent is running on {self.meta} (it holds {self.path('lock')})")
                time.sleep(0.01)

    def agent_id(self) -> str:
        """The agent's id, made on first start and kept. A damaged one stops a strict agent;
        otherwise the agent takes a new id."""
        path = self.path("agent_id")
        known = (read_text(path) or "").strip()
        if known and _is_id(known):
            return known
        if known and self.strict:
            raise DamagedFile(path, f"not an agent id: {known[:40]!r}")
        made = str(uuid.uuid4())
        makedirs_durable(self.meta)
        write_atomic(path, made + "\n", durable=True)
        return made

    def rebooted(self) -> bool:
        """Whether the host rebooted since the recorded boot (False when none is recorded)."""
        previous = (read_text(self.path("boot_id")) or "").strip()
        return bool(previous) and previous != linux.boot_id()

    def record_boot(self) -> None:
        """Record this boot's id: once recovery is done, so that a start that fails before still
        sees the reboot next time."""
        makedirs_durable(self.meta)
        write_atomic(self.path("boot_id"), linux.boot_id() + "\n", durable=True)

    def write_flags(self, flags: dict) -> None:
        makedirs_durable(self.meta)
        write_json(self.path("flags.json"), flags, durable=True)

    @property
    def allocations(self) -> str:
        return self.path("allocations.json")

    # -- containers -----------------------------------------------------------------------------

    def add_container(self, container_id: str, container: dict) -> dict:
        """Checkpoint a launch before it begins: container.json, durably. Its presence is what says
        the checkpoint is whole, and it stands for TASK_STARTING too; returns that status."""
        directory = self._container_dir(container_id)
        makedirs_durable(os.path.dirname(directory))
        spread_subdirectories(os.path.dirname(directory))
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            pass                    # left by a removal cut short: load() clears those, but be lenient
        write_json(os.path.join(directory, "container.json"), container, durable=True)   # file, directory
        fsync_directory(os.path.dirname(directory))        # the new directory's entry, last
        stream = self._streams[container_id] = [_starting(container)]
        return stream[0]

    def statuses(self, container_id: str, container: dict | None = None) -> list[dict]:
        """The stream; [TASK_STARTING] while nothing was appended (`container`: its container.json
        when the caller has read it, for the start's timestamp)."""
        stream = self._streams.get(container_id)
        if stream is None:
            path = os.path.join(self._container_dir(container_id), "statuses.json")
            stream = read_json(path, default=None)
            if stream is None:
                if container is None:
                    container = read_json(os.path.join(self._container_dir(container_id), "container.json"),
                                          default={})
                stream = [_starting(container)]
            stream = self._streams[container_id] = _check_statuses(path, stream)
        return list(stream)

    def append_status(self, container_id: str, state: str, reason: str | None = None, message: str = "",
                      durable: bool = True, **extra) -> dict | None:
        """Add a status to the stream; returns it, or None when it adds nothing: a repeat of the
        last state, or anything after the container's end (an end is reported once). durable=False
        for a status that recovery would find again (TASK_RUNNING): it is still written atomically."""
        if state not in STATES:
            raise ValueError(f"not a task state: {state}")
        stream = self.statuses(container_id)
        if stream and (stream[-1]["state"] == state or stream[-1]["state"] in TERMINAL_STATES):
            return None
        status = {"state": state, "timestamp": time.time(), "reason": reason, "message": message, **extra}
        stream.append(status)
        write_json(os.path.join(self._container_dir(container_id), "statuses.json"), stream, durable=durable)
        self._streams[container_id] = stream
        return status

    def remove_container(self, container_id: str) -> None:
        # container.json first, so that a removal cut short leaves an incomplete checkpoint, not a torn one.
        self._streams.pop(container_id, None)
        directory = self._container_dir(container_id)
        try:
            os.unlink(os.path.join(directory, "container.json"))
        except FileNotFoundError:
            pass
        remove_tree(directory)

    def container_ids(self) -> list[str]:
        try:
            return sorted(e.name for e in os.scandir(self.path("containers")) if e.is_dir())
        except FileNotFoundError:
            return []

    def load(self) -> Recovered:
        """Read every container's checkpoint back. A damaged file raises DamagedFile with strict;
        without, the container is listed in `damaged`. Checkpoints cut short before any launch
        (no container.json) are removed and listed in `incomplete`; so are torn temp files."""
        found = Recovered(rebooted=self.rebooted())
        for container_id in self.container_ids():
            _remove_temp_files(self._container_dir(container_id))
            path = os.path.join(self._container_dir(container_id), "container.json")
            try:
                container = read_json(path, default=None)
                if container is None:
                    self.remove_container(container_id)
                    found.incomplete.append(container_id)
                    continue
                if not isinstance(container, dict) or not isinstance(container.get("config"), dict):
                    raise DamagedFile(path, "not a container record with a config")
                self._streams.pop(container_id, None)           # what is on disk, not what was cached
                found.containers[container_id] = {"container": container,
                                                  "statuses": self.statuses(container_id, container)}
            except DamagedFile as e:
                if self.strict:
                    raise
                found.damaged[container_id] = str(e)
        return found


def _starting(container: dict) -> dict:
    created = container.get("created") if isinstance(container, dict) else None
    return {"state": TASK_STARTING, "timestamp": created if isinstance(created, (int, float)) else time.time(),
            "reason": None, "message": ""}


def _check_statuses(path: str, stream) -> list[dict]:
    if not isinstance(stream, list) or not all(isinstance(s, dict) and s.get("state") in STATES for s in stream):
        raise DamagedFile(path, "not a list of task statuses")
    return stream


def _remove_temp_files(directory: str) -> None:
    """Drop what writes cut short by a crash left (write_atomic's `<name>.tmp.<pid>`)."""
    for name in os.listdir(directory):
        if ".tmp." in name:
            os.unlink(os.path.join(directory, name))


def _is_id(text: str) -> bool:
    return len(text) <= 128 and all(c.isalnum() or c in "-_." for c in text)


def makedirs_durable(path: str) -> None:
    """mkdir -p, and fsync the parent of each directory made, so that the new entries survive a crash."""
    if os.path.isdir(path):
        return
    makedirs_durable(os.path.dirname(path))
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        return
    fsync_directory(os.path.dirname(path))


def fsync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
