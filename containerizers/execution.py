"""Execution: a command exec'd in a running container, as a containerizer's exec() hands it to
its caller (base.py's SyncContainerizer.exec); Attachment: a session with a running container's
stdin and output, as its attach() does. Its own module: a cold `corral exec` imports it without
the rest of the containerizer."""

from __future__ import annotations

import os


class Held:
    """What a containerizer hands its caller to hold: closed on leaving a `with` block."""

    def close(self) -> None:
        """Let go of what it holds (fds, a connection); the container is left as it is."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Attachment(Held):
    """A connection to a running container's stdin and output (each containerizer's own)."""

    def relay(self, stdin: int | None, outputs: dict[int, int], terminal=None) -> bool:
        """Copy `stdin` (None: none) to the task until its end, and the task's output to
        `outputs` (stream -> fd) until the container's output ends (True) or the caller stops
        taking it (False); with `terminal` (corral.terminal.Terminal), its size now and at each
        change."""
        raise NotImplementedError


class Execution(Held):
    """A command exec'd in a running container. What the caller copies, if anything: it writes
    the command's input to `to_process` (when it is not None and the exec is interactive) and
    reads each `outputs` pair's fd until it ends, handing what it reads to the pair's sink (an
    fd, or a callable taking bytes): corral.terminal.relay does exactly that. Empty outputs:
    the command has the caller's fds themselves, nothing to copy. Then wait() for its end."""
    pid: int | None = None                  # the command's pid on the host, where there is one
    to_process: int | None = None
    outputs: list = []

    def resize(self, rows: int, cols: int) -> None:
        """The terminal's new size (with tty)."""

    def signal(self, sig: int) -> None:
        """Deliver `sig` to the command (the caller's own signals, passed on)."""

    def end_input(self) -> None:
        """The caller's input has ended (relay's on_input_end)."""

    def wait(self) -> int:
        """Block until the command ends: its exit code, 128+N for a death by signal N."""
        raise NotImplementedError


def exit_code(status: int) -> int:
    """A raw wait status as a shell's exit code: the code, or 128+N for a death by signal N."""
    return 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
