"""The external containerizer: any executable that speaks corral's JSON protocol runs the containers.

corral runs `PROGRAM COMMAND` with one JSON object on stdin and reads one JSON object from its
stdout; exit status 0 means success. The protocol is written down in docs/external-containerizer.md.
The program's stderr is appended to the container's sandbox (containerizer.log), or to
<runtime-dir>/external/containerizer.log for calls about no container in particular.

A program that misbehaves (is missing, exits non-zero, prints something other than one JSON
object, hangs past the timeout) fails the call it was asked, on that container, with a one-line
error that says which; the hung program's whole process group is killed. Nothing else is touched.

corral keeps its own record of each container (<runtime-dir>/external/containers/<id>/: config,
kill record, termination; SyncContainerizer's, as every containerizer's), so unknown ids are
refused without asking the program, a verdict once read is never asked for again, and the
program's account of an end is judged by the verdict every containerizer shares.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from corral.files import open_beneath
from corral.types import (LAUNCHED, NOT_SUPPORTED, STATISTICS_FIELDS, TASK_KILLED, ContainerConfig,
                          CorralError, Limitation, Resources, Termination, signal_name)

from .base import Capabilities, End, SyncContainerizer
from .state import ContainerFiles, state_dir
from .threaded import ThreadedContainerizer

PROTOCOL_VERSION = 1
LOG_NAME = "containerizer.log"


class ExternalError(CorralError):
    """The external program failed, or broke the protocol, on one call."""


class SyncExternalContainerizer(SyncContainerizer):
    name = "external"
    # The program is handed whatever the config asks for (and may answer NOT_SUPPORTED). Its wait
    # cannot be cut short (a call past its time limit is killed), and its destroy stops the container.
    capabilities = Capabilities(images=True, networks=True, wait_timeout=False)
    keeps_failed_sandbox = True     # the program's log of the failure, containerizer.log, is there

    def __init__(self, work_dir: str, runtime_dir: str, path: str, timeout: float = 30.0):
        super().__init__(work_dir, state_dir(runtime_dir, self.name))
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

    # -- the interface ----------------------------------------------------------------------

    def _start(self, files: ContainerFiles, config: ContainerConfig, record: dict) -> str:
        container_id = files.container_id
        reply = self.call("launch", {"container_id": container_id, "config": config.to_dict(),
                                     "sandbox": files.sandbox}, container_id)
        result = reply.get("result")
        if result not in (LAUNCHED, NOT_SUPPORTED):
            raise ExternalError(f"external containerizer {self.path} launch {container_id}: "
                                f"'result' must be {LAUNCHED} or {NOT_SUPPORTED}, not {result!r}")
        return result

    def _wait(self, files: ContainerFiles, timeout: float | None) -> Termination:
        reply = self.call("wait", {"container_id": files.container_id}, files.container_id, timeout=timeout)
        return self.termination(files, _end(reply))

    def _signal(self, files: ContainerFiles, sig: int) -> None:
        self.call("kill", {"container_id": files.container_id, "signal": sig}, files.container_id)

    def _release(self, files: ContainerFiles) -> End:
        """The program's destroy: it kills, waits and releases in one; its account of the end."""
        reply = self.call("destroy", {"container_id": files.container_id}, files.container_id)
        return _end(reply.get("termination") or {"state": TASK_KILLED, "message": "destroyed"})

    def update(self, container_id: str, resources: Resources) -> None:
        self.files(container_id)
        self.call("update", {"container_id": container_id, "resources": vars(resources)}, container_id)

    def usage(self, container_id: str) -> dict:
        self.files(container_id)
        stats = self.call("usage", {"container_id": container_id}, container_id).get("statistics") or {}
        return {"timestamp": time.time(), **{k: v for k, v in stats.items() if k in STATISTICS_FIELDS}}

    def recover(self) -> list[str]:
        """The program is told what corral knows and cleans up the rest; what it no longer has is lost."""
        known = self.containers()
        os.makedirs(self.state_dir, exist_ok=True)
        alive = set(self.call("recover", {"containers": known}).get("containers") or [])
        for container_id in known:
            files = self.files(container_id)
            if container_id not in alive and files.termination() is None:
                self.termination(files, End(None, message="the external containerizer no longer knows this container"))
        return known


class ExternalContainerizer(ThreadedContainerizer):
    """The asyncio face: each call of the program on a thread."""

    def __init__(self, *args, **kwargs):
        super().__init__(SyncExternalContainerizer(*args, **kwargs))


def _end(reply: dict) -> End:
    """The program's {"exit_code"|"signal", "state", "reason", "message"}: the inputs to the verdict."""
    code, sig = reply.get("exit_code"), reply.get("signal")
    raw = (code & 0xFF) << 8 if isinstance(code, int) else (sig & 0x7F if isinstance(sig, int) else None)
    message = reply.get("message") or ""
    limitation = Limitation(reply["reason"], message) if reply.get("reason") else None
    return End(raw, limitation=limitation, message=message, state=reply.get("state"))


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
