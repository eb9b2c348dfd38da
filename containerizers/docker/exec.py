"""Exec in a docker container: dockerd's exec API (create, start on a hijacked connection,
resize, inspect for the exit code). The command gets the container's environment, user and
confinement from dockerd, plus what the ExecConfig asks.

The caller relays the hijacked connection (Execution's to_process and outputs): its stdin is
written to the socket, whose write side is shut at the input's end (dockerd then closes the
command's stdin); the output is raw with a tty, else dockerd's frames, split here onto the
caller's stdout and stderr.
"""

from __future__ import annotations

import os
import socket
import time

from corral.types import ExecConfig, ExecFailed, NotRunning

from ..execution import Execution
from ..state import ContainerFiles
from .engine import EngineError

EXIT_POLL_INTERVAL = 0.01        # dockerd marks the exec ended a moment after its stream closes
EXIT_POLL_LIMIT = 10.0


def start(containerizer, files: ContainerFiles, config: ExecConfig, stdio: tuple[int, int, int]) -> "DockerExecution":
    from .sync import SANDBOX
    engine = containerizer.engine
    workdir = os.path.join(SANDBOX, config.workdir) if config.workdir else None
    create = {"AttachStdin": config.interactive, "AttachStdout": True, "AttachStderr": True, "Tty": config.tty,
              "Cmd": config.argv, "Env": [f"{k}={v}" for k, v in config.env.items()]}
    if config.user:
        create["User"] = config.user
    if workdir:
        create["WorkingDir"] = workdir
    try:
        exec_id = engine.exec_create(containerizer.docker_id(files), create)
    except EngineError as e:
        if not containerizer.running(files):
            raise NotRunning(files.container_id) from None
        raise ExecFailed(str(e)) from None
    sock, early = engine.exec_start(exec_id, config.tty)
    execution = DockerExecution(engine, exec_id, sock, config, stdio)
    if config.tty and config.size:
        execution.resize(*config.size)
    if early:
        execution.sink(early)
    return execution


class DockerExecution(Execution):
    def __init__(self, engine, exec_id: str, sock: socket.socket, config: ExecConfig, stdio: tuple[int, int, int]):
        self.engine, self.exec_id, self.sock = engine, exec_id, sock
        self.to_process = sock.fileno() if config.interactive else None
        self.sink = _Writer(stdio[1]) if config.tty else _Frames(stdio[1], stdio[2])
        self.outputs = [(sock.fileno(), self.sink)]
        self.pid = None

    def resize(self, rows: int, cols: int) -> None:
        try:
            self.engine.exec_resize(self.exec_id, rows, cols)
        except EngineError:
            pass                # ended meanwhile: nothing left to size

    def end_input(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def signal(self, sig: int) -> None:
        pid = self.engine.exec_inspect(self.exec_id).get("Pid")
        if pid:
            try:
                os.kill(pid, sig)       # dockerd has no call for it; its exec's pid is the host's
            except ProcessLookupError:
                pass

    def wait(self) -> int:
        """The exit code, once dockerd has it (after the stream ended: the caller relayed it)."""
        deadline = time.monotonic() + EXIT_POLL_LIMIT
        while True:
            info = self.engine.exec_inspect(self.exec_id)
            if not info.get("Running") and info.get("ExitCode") is not None:
                return info["ExitCode"]
            if time.monotonic() > deadline:
                raise ExecFailed(f"dockerd has not reported the end of exec {self.exec_id[:12]}", 1)
            time.sleep(EXIT_POLL_INTERVAL)

    def close(self) -> None:
        self.sock.close()
        self.outputs, self.to_process = [], None


class _Writer:
    def __init__(self, fd: int):
        self.fd = fd

    def __call__(self, data: bytes) -> None:
        _write_all(self.fd, data)


class _Frames:
    """dockerd's multiplexed stream (8-byte heads: the stream, 3 zero bytes, the length) onto
    the caller's stdout and stderr, however the bytes arrive."""

    def __init__(self, stdout: int, stderr: int):
        self.targets = {1: stdout, 2: stderr}
        self.buffer = b""

    def __call__(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= 8:
            size = int.from_bytes(self.buffer[4:8], "big")
            if len(self.buffer) < 8 + size:
                return
            stream, payload, self.buffer = self.buffer[0], self.buffer[8:8 + size], self.buffer[8 + size:]
            _write_all(self.targets.get(stream, self.targets[1]), payload)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
