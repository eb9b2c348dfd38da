"""dockerd's hijacked connections (an exec's start, a container's attach), relayed for the CLI.

dockerd answers such a call by handing its connection over to the process's streams: what is
written to it is the process's stdin (shutting its write side ends that input), what is read
from it is the process's output, raw with a tty (one stream), else multiplexed in frames
(8-byte heads: the stream, 3 zero bytes, the length). Engine.exec_start and Engine.attach make
the connection; this module splits what comes back onto the caller's stdout and stderr.
"""

from __future__ import annotations

import os
import socket

from .. import execution


class Hijacked:
    """One hijacked connection: `sock`, and the first of its output (read with the answer's head)."""

    def __init__(self, sock: socket.socket, early: bytes, tty: bool):
        self.sock, self.early, self.tty = sock, early, tty

    def sink(self, stdout: int, stderr: int) -> "Sink":
        """Where the output goes: raw onto `stdout` with a tty, else split by frames. The output
        read with the answer's head is written at once."""
        sink = Sink(stdout) if self.tty else Frames(stdout, stderr)
        if self.early:
            sink(self.early)
            self.early = b""
        return sink

    def end_input(self) -> None:
        """The end of the process's stdin (dockerd closes it, for an attach when the container
        was started with StdinOnce)."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()


class Sink:
    """Output written whole to a caller's fd; `broken` once the caller stopped reading (a
    closed pipe: terminal.relay then ends that output)."""

    def __init__(self, fd: int):
        self.fd = fd
        self.broken = False

    def __call__(self, data: bytes) -> None:
        self._write(self.fd, data)

    def _write(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view):]
        except BrokenPipeError:
            self.broken = True
            raise


class Frames(Sink):
    """dockerd's multiplexed stream onto the caller's stdout and stderr, however the bytes arrive."""

    def __init__(self, stdout: int, stderr: int):
        super().__init__(stdout)
        self.targets = {1: stdout, 2: stderr}
        self.buffer = b""

    def __call__(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= 8:
            size = int.from_bytes(self.buffer[4:8], "big")
            if len(self.buffer) < 8 + size:
                return
            stream, payload, self.buffer = self.buffer[0], self.buffer[8:8 + size], self.buffer[8 + size:]
            self._write(self.targets.get(stream, self.fd), payload)


class Attachment(execution.Attachment):
    """A container's attach connection (SyncDockerContainerizer.attach), as the Mesos
    switchboard's Attachment: relay() drives a whole session for the CLI."""

    def __init__(self, engine, docker_id: str, hijacked: Hijacked, stdin_once: bool):
        """`stdin_once`: the container was created with StdinOnce (a foreground run's), so that
        the end of our input is the task's."""
        self.engine, self.docker_id, self.hijacked = engine, docker_id, hijacked
        self.stdin_once = stdin_once

    def relay(self, stdin: int | None, outputs: dict[int, int], terminal=None) -> bool:
        """Copy `stdin` (None: none) to the task until its end, and the task's output to
        `outputs` (stream -> fd) until the container's output ends (True) or the caller stops
        taking it (False). With `terminal` (corral.terminal.Terminal), the container's tty gets
        its size now and at each change, and its detach keys raise Detached (corral.terminal.relay:
        the connection is left as it is, the container's stdin open).

        Without StdinOnce, the end of our input is not passed on: the container's stdin stays open
        for the next client, and dockerd would end our output with it (as `docker attach` loses
        what the task writes after its input's end), where we follow it to the container's end."""
        from corral.terminal import relay
        if terminal is not None and (size := terminal.size()):
            self.resize(*size)
        try:
            sink = self.hijacked.sink(outputs[1], outputs.get(2, outputs[1]))
        except BrokenPipeError:
            return False
        fd = self.hijacked.sock.fileno()
        relay(stdin, fd if stdin is not None else None, [(fd, sink)], terminal=terminal,
              on_resize=self.resize if terminal is not None else None,
              on_input_end=self.hijacked.end_input if self.stdin_once else _keep_open)
        return not sink.broken

    def resize(self, rows: int, cols: int) -> None:
        from .engine import EngineError
        try:
            self.engine.resize(self.docker_id, rows, cols)
        except EngineError:
            pass                # ended meanwhile: nothing left to size

    def close(self) -> None:
        self.hijacked.close()


def _keep_open() -> None:
    pass
