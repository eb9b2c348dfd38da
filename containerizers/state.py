"""A container's files, the same for every containerizer: the runtime dir (config, pids,
status, termination) and the sandbox.

    <runtime-dir>/containers/<id>/config.json       what was launched (ContainerConfig + launch details)
                                  pids.json         supervisor and init: pid and start time (and the
                                                    fd a waiter copies from the supervisor: mesos/)
                                  status.json       written by the supervisor when init ends
                                  exec.sock         where init serves execs (mesos/execserver.py)
                                  kill.json         the signal corral sent, when it ended the task itself
                                  termination.json  the verdict, written by whoever saw the end first
    <work-dir>/containers/<id>/                     the sandbox: stdout, stderr, the task's files

Every file is written atomically, so any process can read any container's state at any time;
kill.json and termination.json are written once, by the first writer (link(2): a later writer,
in this process or another, finds the file there and reads it back).
"""

from __future__ import annotations

import os
import time

from corral.files import open_beneath, read_json, remove_tree, spread_subdirectories, write_json, write_json_once
from corral.types import ContainerConfig, ContainerExists, Termination, check_container_id


def state_dir(runtime_dir: str, name: str) -> str:
    """Where the containerizer `name` keeps its containers' runtime dirs (<state_dir>/containers/<id>):
    the Mesos one in the runtime dir itself, each other in a folder of its name. Which of these
    holds an id says which containerizer owns the container."""
    return runtime_dir if name == "mesos" else os.path.join(runtime_dir, name)


EXEC_SOCKET = "exec.sock"           # where the container's init serves execs (mesos/execserver.py)
EXEC_RECORD = "exec.json"           # what an exec that joins from outside gets (mesos/nsenter.py), where init does not serve


class ContainerFiles:
    def __init__(self, runtime_dir: str, work_dir: str, container_id: str):
        self.container_id = check_container_id(container_id)
        self.runtime = os.path.join(runtime_dir, "containers", container_id)
        self.sandbox = os.path.join(work_dir, "containers", container_id)

    def path(self, name: str) -> str:
        return os.path.join(self.runtime, name)

    @property
    def stdout(self) -> str:
        return os.path.join(self.sandbox, "stdout")

    @property
    def stderr(self) -> str:
        return os.path.join(self.sandbox, "stderr")

    def open_in_sandbox(self, name: str, flags: int = os.O_RDONLY) -> int:
        """An fd on the sandbox's file `name` (stdout, stderr, ...): the task may have put a link
        or a device in its place, and corral reads and writes it as root (files.open_beneath)."""
        return open_beneath(self.sandbox, name, flags)

    def exists(self) -> bool:
        return os.path.isdir(self.runtime)

    def create(self) -> None:
        """Claim the id: the runtime dir's mkdir is the atomic 'first one wins' (ContainerExists)."""
        os.makedirs(os.path.dirname(self.runtime), exist_ok=True)
        spread_subdirectories(os.path.dirname(self.runtime))
        spread_subdirectories(os.path.dirname(self.sandbox))   # made here the first time, flagged before its first sandbox
        try:
            os.mkdir(self.runtime, 0o700)
        except FileExistsError:
            raise ContainerExists(self.container_id) from None
        os.makedirs(self.sandbox, 0o755, exist_ok=True)    # kept from an earlier container of this id, maybe

    def config(self) -> ContainerConfig:
        return ContainerConfig.from_dict(read_json(self.path("config.json"))["config"])

    def launch_record(self) -> dict:
        return read_json(self.path("config.json"))

    def pids(self) -> dict:
        return read_json(self.path("pids.json"), default={})

    def status(self) -> dict | None:
        return read_json(self.path("status.json"), default=None)

    def kill_record(self) -> dict | None:
        return read_json(self.path("kill.json"), default=None)

    def record_kill(self, sig: int, reason: str | None = None, message: str = "") -> bool:
        """Say, before signalling, that corral itself ends the task (so its end reads TASK_KILLED,
        or the limitation given); the first word stands. STOP and CONT end nothing. The record
        holds its time (CLOCK_MONOTONIC, as the task's recorded end: see ended_before). Whether
        this call wrote it."""
        from _signal import SIGCONT, SIGSTOP
        if sig in (SIGSTOP, SIGCONT) or self.kill_record() is not None:
            return False
        record = {"signal": sig, "at": time.monotonic_ns()}
        if reason:
            record.update(reason=reason, message=message)
        return write_json_once(self.path("kill.json"), record)

    def withdraw_kill(self) -> None:
        """Forget a kill whose signal reached nothing: the task had ended on its own."""
        try:
            os.unlink(self.path("kill.json"))
        except FileNotFoundError:
            pass

    def termination(self) -> Termination | None:
        data = read_json(self.path("termination.json"), default=None)
        return Termination.from_dict(data) if data else None

    def settle(self, decide) -> Termination:
        """The container's verdict, written once: the one on file, else decide()'s, written now.
        The first to write it decides; every later caller, a racing one too, reads that back."""
        known = self.termination()
        if known is None:
            decided = decide()
            if write_json_once(self.path("termination.json"), decided.to_dict()):
                return decided
            known = self.termination() or decided       # another's, unless it was removed meanwhile
        return known

    def write(self, name: str, value) -> None:
        write_json(self.path(name), value)

    def remove(self, sandbox: bool = True) -> None:
        remove_tree(self.runtime)
        if sandbox:
            remove_tree(self.sandbox)


def ended_before(task_ended: int | None, kill: dict) -> bool:
    """Whether the task's end (CLOCK_MONOTONIC ns, as init saw it) came before the kill was
    recorded, and so before its signal was sent: then the task's own exit status tells its end.
    Unknown times (records of older versions) leave the kill standing."""
    return task_ended is not None and kill.get("at") is not None and task_ended <= kill["at"]


def container_ids(runtime_dir: str) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(os.path.join(runtime_dir, "containers")) if e.is_dir())
    except FileNotFoundError:
        return []
