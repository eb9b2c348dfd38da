"""SyncContainerizer: the blocking containerizer that every containerizer is, and what they share.

The base owns everything that is the same whichever engine runs the task: a container's files
and record (state.py), status() and containers(), the kill and settle bookkeeping, waiting and
following the output, destroy's order, and the verdict (how an end is reported). A containerizer
supplies only what is its own:

    supports(config)        whether it takes the container (default: by name and networks)
    _prepare(config)        checks and additions before anything exists (default: none)
    _start(files, config, record)   start it; LAUNCHED or NOT_SUPPORTED (the record may gain fields)
    _signal(files, sig)     deliver a signal; False when it found the task already ended on its own
    _running(files)         whether its task may still be running
    _state(files, ended)    ("RUNNING" | "EXITED" | "STARTING", pid) for status()
    _wait(files, timeout)   block until it ends; its Termination, or None when the timeout passed
    _end(files)             how it ended, as an End: the inputs to the shared verdict
    _limitation(files)      a limit it broke, found after the fact (default: none)
    _exec(files, config, stdio)   run another command in the running container (capabilities.exec)
    _release(files)         give back all it held; an End when releasing is what ends it
    update, usage, recover  as their names say
    capabilities            what it can do, for callers to ask instead of its name

Every call reads and writes the container's state on disk, so a container launched by one
process can be waited on, killed and destroyed by another. The CLI uses these classes as they
are (asyncio alone costs it 60-90 ms); the agent uses them through ThreadedContainerizer.
"""

from __future__ import annotations

import signal
import time

from corral.record import Record
from corral.types import (NOT_SUPPORTED, TASK_KILLED, TASK_LOST, ContainerConfig, ExecConfig, InvalidInput,
                          Limitation, NoSuchContainer, NotRunning, Resources, Termination, verdict)

from .execution import Execution
from .state import ContainerFiles, container_ids, ended_before

STOP_TIMEOUT = 10.0         # how long destroy waits for a SIGKILLed container's end
FOLLOW_INTERVAL = 0.05      # how often a followed output is read while its task runs


class Capabilities(Record):
    """What a containerizer can do (as Nomad's drivers.Capabilities): callers ask this, never a name."""
    images: bool = False        # runs a container from config.image
    networks: bool = False      # named networks and published ports (config.network, config.ports)
    exec: bool = False          # runs another command in a running container (exec())
    io: bool = False            # stdin, a tty, attach and log caps (ContainerConfig.stdin, tty, log_max_*)
    wait_timeout: bool = True   # a wait can be cut short (wait(timeout=...)): destroy waits for the end
    #                             of its SIGKILL, and output is followed as it comes; without, its
    #                             _release stops the container, and output is read once it has ended


class End(Record):
    """How a container ended, as its containerizer knows it: the inputs to the shared verdict."""
    raw: int | None                         # the task's wait status; None: unknown (TASK_LOST)
    error: str | None = None                # the launch failed: why
    limitation: Limitation | None = None    # a limit it broke, by the containerizer's own account
    message: str = ""                       # its own words for the end, kept over the verdict's
    ended: int | None = None                # when the task ended (CLOCK_MONOTONIC ns), where it is known
    state: str | None = None                # its own TaskState, taken as given (the external protocol's)


class SyncContainerizer:
    name: str = ""
    capabilities = Capabilities()
    keeps_failed_sandbox = False    # a failed launch leaves the sandbox (what the containerizer logged there)

    def __init__(self, work_dir: str, state_dir: str):
        """`state_dir`: where the containers' runtime dirs are (<state_dir>/containers/<id>)."""
        self.work_dir = work_dir
        self.state_dir = state_dir

    # -- the container's files -------------------------------------------------------------

    def files(self, container_id: str) -> ContainerFiles:
        """The container's files; NoSuchContainer when it is not (or no longer) known."""
        files = ContainerFiles(self.state_dir, self.work_dir, container_id)
        if not files.exists():
            raise NoSuchContainer(container_id)
        return files

    def containers(self) -> list[str]:
        return container_ids(self.state_dir)

    # -- launch ----------------------------------------------------------------------------

    def supports(self, config: ContainerConfig) -> bool:
        """Whether it takes the container: the one asked for (or none was), with what it can do."""
        if config.containerizer not in (None, self.name):
            return False
        if (config.stdin or config.tty or config.log_max_size) and not self.capabilities.io:
            return False
        return self.capabilities.networks or (config.network in (None, "host") and not config.ports)

    def launch(self, container_id: str, config: ContainerConfig) -> str:
        """Start the container: LAUNCHED, or NOT_SUPPORTED (nothing is left: another may take it).
        The id is claimed first (ContainerExists); a failed launch leaves no record."""
        if not self.supports(config):
            return NOT_SUPPORTED
        config = self._prepare(config)
        files = ContainerFiles(self.state_dir, self.work_dir, container_id)
        files.create()
        record = {"config": config.to_dict(), "created": time.time(), "sandbox": files.sandbox}
        try:
            files.write("config.json", record)
            result = self._start(files, config, record)
        except BaseException:
            files.remove(sandbox=not self.keeps_failed_sandbox)
            raise
        if result == NOT_SUPPORTED:
            files.remove()          # the next containerizer starts from a clean slate
        return result

    def _prepare(self, config: ContainerConfig) -> ContainerConfig:
        return config

    def _start(self, files: ContainerFiles, config: ContainerConfig, record: dict) -> str:
        raise NotImplementedError

    # -- the end ---------------------------------------------------------------------------

    def waiter(self, container_id: str) -> "Waiter":
        """Something to wait on the container's end with: block(timeout), and close()."""
        return Waiter(self, self.files(container_id))

    def wait(self, container_id: str, timeout: float | None = None) -> Termination | None:
        """Block until the container ends (None if `timeout` seconds pass first)."""
        with self.waiter(container_id) as waiter:
            return waiter.block(timeout)

    def _wait(self, files: ContainerFiles, timeout: float | None) -> Termination | None:
        raise NotImplementedError

    def termination(self, files: ContainerFiles, end: End | None = None) -> Termination:
        """The verdict on an ended container, written once (the first writer's stands): the one on
        file, else the verdict on `end` (by default, what _end() reads now)."""
        return files.settle(lambda: self._verdict(files, end if end is not None else self._end(files)))

    def _end(self, files: ContainerFiles) -> End:
        raise NotImplementedError

    def _limitation(self, files: ContainerFiles) -> Limitation | None:
        return None

    def _verdict(self, files: ContainerFiles, end: End) -> Termination:
        """How an end is reported, whichever containerizer saw it: the containerizer's own state
        if it gave one; TASK_LOST if the end is unknown; else corral/types.py's verdict, a limit
        that corral enforced by killing (kill.json's reason) counting as a broken limit, and a
        kill recorded after the task's end counting for nothing (it ended nothing)."""
        cid = files.container_id
        reason = end.limitation.reason if end.limitation else None
        if end.state:
            return Termination(cid, end.raw, end.state, reason, end.message)
        if end.raw is None:
            return Termination(cid, None, TASK_LOST, reason, end.message)
        kill = files.kill_record() or {}
        if kill.get("reason"):
            limitation = Limitation(kill["reason"], kill.get("message", ""))
        else:
            limitation = end.limitation or self._limitation(files)
        killed_with = kill.get("signal")
        if killed_with and ended_before(end.ended, kill):
            killed_with = None
        decided = verdict(cid, end.raw, end.error, limitation, killed_with)
        if end.message:
            return Termination(cid, end.raw, decided.state, decided.reason, end.message)
        return decided

    # -- kill, destroy ---------------------------------------------------------------------

    def kill(self, container_id: str, sig: int = signal.SIGTERM) -> None:
        """Signal the task; a container that has ended is left alone. The kill is on record
        before the signal goes, so that the end it brings reads TASK_KILLED."""
        files = self.files(container_id)
        if files.termination() is not None or not self._running(files):
            return
        self._kill(files, sig)

    def _kill(self, files: ContainerFiles, sig: int) -> None:
        """Record the kill, then signal. A signal that found the task already ended on its own
        withdraws the record this call wrote: the task's exit status tells its end."""
        recorded = files.record_kill(sig)
        if self._signal(files, sig) is False and recorded:
            files.withdraw_kill()

    def _signal(self, files: ContainerFiles, sig: int) -> bool | None:
        raise NotImplementedError

    def _running(self, files: ContainerFiles) -> bool:
        return True

    def destroy(self, container_id: str, remove_sandbox: bool = False) -> Termination:
        """SIGKILL whatever runs, settle the verdict, release everything the container held, and
        forget it (its sandbox too with remove_sandbox)."""
        files = self.files(container_id)
        if self.stop(files) and self.wait(container_id, timeout=STOP_TIMEOUT) is None:
            files.settle(lambda: Termination(container_id, None, TASK_KILLED, None,
                                             f"still running {STOP_TIMEOUT:g}s after SIGKILL; removed by force"))
        return self.finish_destroy(files, remove_sandbox)

    def finish_destroy(self, files: ContainerFiles, remove_sandbox: bool = False) -> Termination:
        """Destroy's last steps, once nothing of the container runs (stop() and the wait for its
        end are done): settle the verdict, release what it held, forget it."""
        if self.capabilities.wait_timeout:
            self.termination(files)         # settled before _release removes what the verdict reads
        termination = self.termination(files, self._release(files))
        files.remove(sandbox=remove_sandbox)
        return termination

    def stop(self, files: ContainerFiles) -> bool:
        """Destroy's first step: SIGKILL every process of a running container, the kill on record
        first (its end reads TASK_KILLED); whether there is an end to wait for. (Without
        wait_timeout, the containerizer's _release stops it: only the kill is recorded here.)"""
        if files.termination() is not None or not self._running(files):
            return False
        if not self.capabilities.wait_timeout:
            files.record_kill(signal.SIGKILL)
            return False
        self._kill(files, signal.SIGKILL)
        return True

    def _release(self, files: ContainerFiles) -> End | None:
        return None

    # -- exec ------------------------------------------------------------------------------

    def exec(self, container_id: str, config: ExecConfig, stdio: tuple[int, int, int] = (0, 1, 2)) -> "Execution":
        """Start `config`'s command in the running container: NoSuchContainer for an unknown id,
        NotRunning for one that has ended, ExecFailed when the command cannot start. `stdio`: the
        caller's stdin, stdout and stderr (stdin is read only with config.interactive); with
        config.tty the command gets a terminal instead, which the caller relays (Execution)."""
        if not self.capabilities.exec:
            raise InvalidInput(f"the {self.name} containerizer cannot run a command in a running container")
        files = self.files(container_id)
        if files.termination() is not None or not self._running(files):
            raise NotRunning(container_id)
        return self._exec(files, config, stdio)

    def _exec(self, files: ContainerFiles, config: ExecConfig, stdio: tuple[int, int, int]) -> "Execution":
        raise NotImplementedError

    # -- the rest --------------------------------------------------------------------------

    def update(self, container_id: str, resources: Resources) -> None:
        raise NotImplementedError

    def usage(self, container_id: str) -> dict:
        """ResourceStatistics fields."""
        raise NotImplementedError

    def recover(self) -> list[str]:
        """Re-learn the containers that outlived the previous process; clean up orphans."""
        raise NotImplementedError

    def status(self, container_id: str) -> dict:
        files = self.files(container_id)
        record = files.launch_record()
        termination = files.termination()
        state, pid = self._state(files, ended=termination is not None)
        if state == "EXITED" and termination is None:
            termination = self.termination(files)
        return {
            "container_id": container_id,
            "containerizer": self.name,
            "state": state,
            "pid": pid,
            "created": record.pop("created", None),
            "sandbox": record.pop("sandbox", None),
            "config": record.pop("config"),
            **record,                       # what else the containerizer recorded (docker: docker_id)
            "termination": termination.to_dict() if termination else None,
        }

    def statuses(self, container_ids: list[str]) -> dict[str, dict]:
        """status() of each container that is known, by id, in one call: a caller that wants many
        (the agent's recovery) makes one trip to a containerizer's thread, not one each."""
        found = {}
        for container_id in container_ids:
            try:
                found[container_id] = self.status(container_id)
            except NoSuchContainer:
                pass
        return found

    def _state(self, files: ContainerFiles, ended: bool) -> tuple[str, int | None]:
        return ("EXITED" if ended else "RUNNING"), None

    def attach(self, container_id: str):
        """A connection to the running container's stdin and output (its relay() runs a session),
        or None where its output is only in its files (output() follows them)."""
        self.files(container_id)
        return None

    def output(self, container_id: str, follow: bool = False, since_now: bool = False):
        """(stream, bytes) pairs of the task's output, stream 1 stdout, 2 stderr, read from the
        sandbox a bounded chunk at a time (a task can write faster than we read), across a log
        cap's rotated files in order; with follow, until the task has ended; since_now, only
        what it writes from now on."""
        from .logs import LogReader
        files = self.files(container_id)
        config = files.config()
        rotated = config.log_max_files if config.log_max_size else None     # a cap's older files, in order
        sources = [(stream, LogReader(files.sandbox, name, rotated, since_now))
                   for stream, name in ((1, "stdout"), (2, "stderr"))]
        try:
            with self.waiter(container_id) if follow else _Ended() as waiter:
                while True:
                    ended = waiter.block(FOLLOW_INTERVAL if self.capabilities.wait_timeout else None) is not None
                    for stream, source in sources:
                        while chunk := source.read(1 << 20):
                            yield stream, chunk
                    if ended:
                        return
        finally:
            for _, source in sources:
                source.close()


class Waiter:
    """Waits for one container's end with the containerizer's _wait; a containerizer that
    waits on something it can hold (the Mesos one: a pidfd) brings a Waiter of its own."""

    def __init__(self, containerizer: SyncContainerizer, files: ContainerFiles):
        self.containerizer = containerizer
        self.files = files

    def block(self, timeout: float | None = None) -> Termination | None:
        known = self.files.termination()
        return known if known is not None else self.containerizer._wait(self.files, timeout)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Ended:
    """A waiter for output without follow: read what there is, once."""

    def block(self, timeout=None) -> bool:
        return True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass
