"""The external containerizer: any executable that speaks corral's JSON protocol runs the containers.

corral runs `PROGRAM COMMAND` with one JSON object on stdin and reads one JSON object from its
stdout; exit status 0 means success. The protocol is written down in docs/external-containerizer.md.
The program's stderr is appended to the container's sandbox (containerizer.log), or to
<runtime-dir>/external/containerizer.log for calls about no container in particular.

A program that misbehaves (is missing, exits non-zero, prints something other than one JSON
object, hangs past the timeout) fails the call it was asked, on that container, with a one-line
error that says which; the hung program's whole process group is killed. Nothing else is touched.

corral keeps its own record of each container (<runtime-dir>/external/containers/<id>/: config,
kill record, termination), so unknown ids are refused without asking the program and a verdict
once read is never asked for again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from corral.types import (LAUNCHED, NOT_SUPPORTED, STATISTICS_FIELDS, TASK_FAILED, TASK_FINISHED, TASK_KILLED,
                          TASK_LOST, ContainerConfig, CorralError, NoSuchContainer, Resources,
                          Termination, kill_can_have_ended, signal_name)

from corral.files import open_beneath

from .state import ContainerFiles, container_ids
from .threaded import ThreadedContainerizer

PROTOCOL_VERSION = 1
LOG_NAME = "containerizer.log"


class ExternalError(CorralError):
    """The external program failed, or broke the protocol, on one call."""


class SyncExternalContainerizer:
    name = "external"

    def __init__(self, work_dir: str, runtime_dir: str, path: str, timeout: float = 30.0):
        self.work_dir = work_dir
        self.state_dir = os.path.join(runtime_dir, "external")
        self.program_dir = os.path.join(self.state_dir, "program")     # the program's own, to keep state in
        self.path = path
        self.timeout = timeout

    # -- talking to the program ---------------------------------------------------------------

    def call(self, command: str, request: dict, container_id: str | None = None,
             timeout: float | None = -1) -> dict:
        """Run `PROGRAM command`, request on stdin; its reply from stdout. timeout=None: no limit."""
        timeout = self.timeout if timeout == -1 else timeout
        what = f"external containerizer {self.path} {command}" + (f" {container_id}" if container_id else "")
        os.makedirs(self.program_dir, exist_ok=True)
        request = {"protocol": PROTOCOL_VERSION, "work_dir": self.program_dir, **request}
        # The sandbox is the task's: its containerizer.log may be a link the task put there.
        log_dir = self.files(container_id).sandbox if container_id else self.state_dir
        with os.fdopen(open_beneath(log_dir, LOG_NAME, os.O_RDWR | os.O_CREAT | os.O_APPEND), "a+b") as log:
            start = log.seek(0, os.SEEK_END)
            try:
                proc = subprocess.Popen([self.path, command], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=log, start_new_session=True, close_fds=True)
            except OSError as e:
                raise ExternalError(f"{what}: cannot run it: {e.strerror}") from None
            try:
                out, _ = proc.communicate(json.dumps(request).encode(), timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                raise ExternalError(f"{what}: no answer within {timeout:g}s; killed it") from None
            except BaseException:
                _kill_group(proc)
                raise
            if proc.returncode != 0:
                reason = (f"exited with status {proc.returncode}" if proc.returncode > 0
                          else f"was killed by {signal_name(-proc.returncode)}")
                last = _last_line(log, start)
                raise ExternalError(f"{what}: {reason}" + (f": {last}" if last else ""))
        try:
            reply = json.loads(out)
        except ValueError as e:
            raise ExternalError(f"{what}: its output is not JSON ({e}): {out[:80]!r}") from None
        if not isinstance(reply, dict):
            raise ExternalError(f"{what}: its output is not a JSON object: {out[:80]!r}")
        return reply

    def files(self, container_id: str) -> ContainerFiles:
        files = ContainerFiles(self.state_dir, self.work_dir, container_id)
        if not files.exists():
            raise NoSuchContainer(container_id)
        return files

    # -- the interface ----------------------------------------------------------------------

    def launch(self, container_id: str, config: ContainerConfig) -> str:
        if config.containerizer not in (None, self.name):
            return NOT_SUPPORTED
        files = ContainerFiles(self.state_dir, self.work_dir, container_id)
        files.create()
        try:
            files.write("config.json", {"config": config.to_dict(), "created": time.time(), "sandbox": files.sandbox})
            reply = self.call("launch", {"container_id": container_id, "config": config.to_dict(),
                                         "sandbox": files.sandbox}, container_id)
            result = reply.get("result")
            if result not in (LAUNCHED, NOT_SUPPORTED):
                raise ExternalError(f"external containerizer {self.path} launch {container_id}: "
                                    f"'result' must be {LAUNCHED} or {NOT_SUPPORTED}, not {result!r}")
        except BaseException:
            files.remove(sandbox=False)
            raise
        if result == NOT_SUPPORTED:
            files.remove(sandbox=True)          # the next containerizer starts from a clean slate
        return result

    def wait(self, container_id: str, timeout: float | None = None) -> Termination:
        files = self.files(container_id)
        known = files.termination()
        if known is not None:
            return known
        reply = self.call("wait", {"container_id": container_id}, container_id, timeout=timeout)
        return self._termination(files, reply)

    def _termination(self, files: ContainerFiles, reply: dict) -> Termination:
        """The program's {"exit_code"|"signal", "state", "reason", "message"} as a Termination, written once."""
        return files.settle(lambda: self._verdict(files, reply))

    @staticmethod
    def _verdict(files: ContainerFiles, reply: dict) -> Termination:
        code, sig = reply.get("exit_code"), reply.get("signal")
        raw = (code & 0xFF) << 8 if isinstance(code, int) else (sig & 0x7F if isinstance(sig, int) else None)
        kill = files.kill_record() or {}
        killed = kill.get("signal") and kill_can_have_ended(kill["signal"], raw)
        state = reply.get("state") or (TASK_LOST if raw is None else TASK_KILLED if killed
                                       else TASK_FINISHED if code == 0 else TASK_FAILED)
        return Termination(files.container_id, raw, state, reply.get("reason"), reply.get("message") or "")

    def kill(self, container_id: str, sig: int = signal.SIGTERM) -> None:
        files = self.files(container_id)
        if files.termination() is not None:
            return
        files.record_kill(sig)
        self.call("kill", {"container_id": container_id, "signal": sig}, container_id)

    def destroy(self, container_id: str, remove_sandbox: bool = False) -> Termination:
        files = self.files(container_id)
        if files.termination() is None and files.kill_record() is None:
            files.write("kill.json", {"signal": signal.SIGKILL})
        reply = self.call("destroy", {"container_id": container_id}, container_id)
        termination = self._termination(files, reply.get("termination") or {"state": TASK_KILLED,
                                                                             "message": "destroyed"})
        files.remove(sandbox=remove_sandbox)
        return termination

    def update(self, container_id: str, resources: Resources) -> None:
        self.files(container_id)
        self.call("update", {"container_id": container_id, "resources": vars(resources)}, container_id)

    def usage(self, container_id: str) -> dict:
        self.files(container_id)
        stats = self.call("usage", {"container_id": container_id}, container_id).get("statistics") or {}
        return {"timestamp": time.time(), **{k: v for k, v in stats.items() if k in STATISTICS_FIELDS}}

    def status(self, container_id: str) -> dict:
        files = self.files(container_id)
        record, termination = files.launch_record(), files.termination()
        return {
            "container_id": container_id,
            "containerizer": self.name,
            "state": "EXITED" if termination else "RUNNING",
            "pid": None,
            "created": record.get("created"),
            "sandbox": record.get("sandbox"),
            "config": record["config"],
            "termination": termination.to_dict() if termination else None,
        }

    def containers(self) -> list[str]:
        return container_ids(self.state_dir)

    def recover(self) -> list[str]:
        """The program is told what corral knows and cleans up the rest; what it no longer has is lost."""
        known = self.containers()
        os.makedirs(self.state_dir, exist_ok=True)
        alive = set(self.call("recover", {"containers": known}).get("containers") or [])
        for container_id in known:
            files = self.files(container_id)
            if container_id not in alive and files.termination() is None:
                self._termination(files, {"state": TASK_LOST,
                                          "message": "the external containerizer no longer knows this container"})
        return known


class ExternalContainerizer(ThreadedContainerizer):
    """The asyncio face: each call of the program on a thread."""

    def __init__(self, *args, **kwargs):
        super().__init__(SyncExternalContainerizer(*args, **kwargs))


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the program and whatever it started in its session, then reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate()


def _last_line(log, start: int) -> str:
    """The last line the program wrote to its log during this call, to quote in the error."""
    log.seek(start)
    lines = log.read()[-4096:].decode(errors="replace").strip().splitlines()
    return lines[-1].strip()[:200] if lines else ""
