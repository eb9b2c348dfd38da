"""Execution: a command exec'd in a running container, as a containerizer's exec() hands it to
its caller (base.py's SyncContainerizer.exec). Its own module: a cold `corral exec` imports it
without the rest of the containerizer."""

from __future__ import annotations


class Execution:
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

    def close(self) -> None:
        """Let go of what the execution holds (its fds); the command is left as it is."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
