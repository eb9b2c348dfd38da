"""Driving a program through a real pseudo-terminal, as a person at a terminal would."""

from __future__ import annotations

import fcntl
import os
import select
import subprocess
import termios
import time

from corral.terminal import set_window_size


class PtySession:
    """`argv` started on a new pty as its session's controlling terminal (its foreground
    process group gets the tty's signals: SIGWINCH, Ctrl-C's SIGINT)."""

    def __init__(self, argv: list[str], env: dict | None = None, rows: int = 24, cols: int = 80):
        self.master, slave = os.openpty()
        set_window_size(slave, rows, cols)
        self.slave_name = os.ttyname(slave)
        self.before = termios.tcgetattr(slave)
        self.process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                        start_new_session=True, preexec_fn=_take_tty, close_fds=True)
        # Kept open here so that the tty's settings can be read after the program has ended.
        self.slave = slave
        self.output = b""

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def expect(self, wanted: bytes, timeout: float = 20.0) -> bytes:
        """Read until `wanted` has appeared in the output; all read so far."""
        deadline = time.monotonic() + timeout
        while wanted not in self.output:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.master], [], [], left)[0]:
                raise AssertionError(f"{wanted!r} not seen in {timeout}s; output: {self.output!r}")
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                raise AssertionError(f"the terminal closed before {wanted!r}; output: {self.output!r}")
            self.output += chunk
        return self.output

    def resize(self, rows: int, cols: int) -> None:
        set_window_size(self.master, rows, cols)

    def settings(self) -> list:
        return termios.tcgetattr(self.slave)

    def wait(self, timeout: float = 30.0) -> int:
        """The program's exit status, reading its output meanwhile (a full pty would block it)."""
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"still running after {timeout}s; output: {self.output!r}")
            if select.select([self.master], [], [], 0.05)[0]:
                try:
                    self.output += os.read(self.master, 65536)
                except OSError:
                    pass
        return self.process.returncode

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.master)
        os.close(self.slave)


def _take_tty() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def is_raw(settings: list) -> bool:
    return not settings[3] & (termios.ICANON | termios.ECHO | termios.ISIG)


def attach_on_a_terminal(executable: str, env: dict, name: str, *options: str) -> PtySession:
    """`corral attach [OPTIONS] NAME` on a terminal of its own, once it has made ours raw."""
    session = PtySession([executable, "attach", *options, name], env=env)
    deadline = time.monotonic() + 20
    while not is_raw(session.settings()):
        assert time.monotonic() < deadline, "the terminal never turned raw"
        time.sleep(0.05)
    return session


def detach(session: PtySession, keys: bytes = b"\x10\x11") -> None:
    """Type the detach keys (ctrl-p ctrl-q unless given) one at a time: corral leaves as docker
    attach does, exit 1 after 'read escape sequence', our terminal as it was."""
    for key in keys:
        session.write(bytes([key]))
    assert session.wait() == 1
    session.expect(b"corral: read escape sequence\r\n")   # written before it exited
    assert session.settings() == session.before
