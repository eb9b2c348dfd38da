"""Exec in a docker container: dockerd's exec API (create, start on a hijacked connection,
resize, inspect for the exit code). The command gets the container's environment, user and
confinement from dockerd, plus what the ExecConfig asks.

The caller relays the hijacked connection (Execution's to_process and outputs; hijack.py): its
stdin is written to the socket, whose write side is shut at the input's end (dockerd then closes
the command's stdin); the output is raw with a tty, else dockerd's frames, split onto the
caller's stdout and stderr.
"""

from __future__ import annotations

import os
import time

from corral.types import ExecConfig, ExecFailed, NotRunning

from ..execution import Execution
from ..state import ContainerFiles
from .engine import EngineError
from .hijack import Hijacked

EXIT_POLL_INTERVAL = 0.01        # dockerd marks the exec ended a moment after its stream closes
EXIT_POLL_LIMIT = 10.0


def start(containerizer, files: ContainerFiles, config: ExecConfig, stdio: tuple[int, int, int]) -> "DockerExecution":
    from .create import SANDBOX
    engine = containerizer.engine
    workdir = os.path.join(SANDBOX, config.workdir) if config.workdir else None
    create = {"AttachStdin": config.interactive, "AttachStdout": True, "AttachStderr": True, "Tty": config.tty,
              "Cmd": config.argv, "Env": [f"{k}={v}" for k, v in config.env.items()]}
    if config.user:
        create["User"] = config.user
    if workdir:
        create["WorkingDir"] = workdir
    if containerizer.detach_keys:
        create["DetachKeys"] = containerizer.detach_keys
    try:
        exec_id = engine.exec_create(containerizer.docker_id(files), create)
    except EngineError as e:
        if not containerizer.running(files):
            raise NotRunning(files.container_id) from None
        raise ExecFailed(str(e)) from None
    execution = DockerExecution(engine, exec_id, Hijacked(*engine.exec_start(exec_id, config.tty), config.tty),
                                config, stdio)
    if config.tty and config.size:
        execution.resize(*config.size)
    return execution


class DockerExecution(Execution):
    def __init__(self, engine, exec_id: str, hijacked: Hijacked, config: ExecConfig, stdio: tuple[int, int, int]):
        self.engine, self.exec_id, self.hijacked = engine, exec_id, hijacked
        fd = hijacked.sock.fileno()
        self.to_process = fd if config.interactive else None
        self.outputs = [(fd, hijacked.sink(stdio[1], stdio[2]))]
        self.pid = None

    def resize(self, rows: int, cols: int) -> None:
        try:
            self.engine.exec_resize(self.exec_id, rows, cols)
        except EngineError:
            pass                # ended meanwhile: nothing left to size

    def end_input(self) -> None:
        self.hijacked.end_input()

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
        self.hijacked.close()
        self.outputs, self.to_process = [], None

