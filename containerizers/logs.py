"""A container's output files in its sandbox: `stdout` and `stderr`, and, where a cap is set
(ContainerConfig.log_max_size), their older parts, as Docker's json-file driver and Mesos's
logrotate container logger keep them:

    stdout          the file being written, at most log_max_size bytes
    stdout.1        the one before it
    ...
    stdout.N-1      the oldest kept (N: log_max_files, every file counted; with 1, none is kept)

RotatingFile is the writer (the Mesos supervisor's, when a cap is set); LogReader reads one
stream across its files in order, oldest first, and follows the one being written across
rotations. Every file is opened beneath the sandbox, never through a link the task put there.
"""

from __future__ import annotations

import os

from corral.files import open_beneath


def names(stream: str, max_files: int | None) -> list[str]:
    """The files of one stream, oldest first."""
    return [f"{stream}.{k}" for k in range((max_files or 1) - 1, 0, -1)] + [stream]


class RotatingFile:
    """Appends to `name` in `sandbox`; with `max_size`, no file grows past it: a full file
    becomes name.1 (name.1 becomes name.2, ..., the oldest is dropped) and a new one starts.
    Disk use is so bounded by max_size * max_files, whatever the task writes."""

    def __init__(self, sandbox: str, name: str, max_size: int | None = None, max_files: int | None = None):
        self.sandbox, self.name = sandbox, name
        self.max_size, self.max_files = max_size, max_files or 1
        self.fd = self._open()
        self.size = os.fstat(self.fd).st_size

    def _open(self) -> int:
        return open_beneath(self.sandbox, self.name, os.O_WRONLY | os.O_CREAT | os.O_APPEND)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self.max_size is not None and self.size >= self.max_size:
                self._rotate()
            room = len(view) if self.max_size is None else self.max_size - self.size
            written = os.write(self.fd, view[:room])
            self.size += written
            view = view[written:]

    def _rotate(self) -> None:
        os.close(self.fd)
        self.fd = -1
        dir_fd = os.open(self.sandbox, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            older = names(self.name, self.max_files)        # oldest first: each moves one place back
            if len(older) == 1:
                _unlink(self.name, dir_fd)
            for dst, src in zip(older, older[1:]):
                try:
                    os.rename(src, dst, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                except FileNotFoundError:
                    pass
                except OSError:
                    # Something the task put in the way (a directory named stdout.2): the file
                    # goes rather than the bound.
                    _unlink(src, dir_fd)
        finally:
            os.close(dir_fd)
        self.fd = self._open()
        self.size = 0

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _unlink(name: str, dir_fd: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except (FileNotFoundError, IsADirectoryError):
        pass


class LogReader:
    """One stream's output, oldest file first. The files there are opened at once (a rotation
    meanwhile moves names, not the files opened); at the end of the last, read() answers b""
    until more is written, and follows a rotation to the new file. A reader that falls more than
    one rotation behind a capped writer misses what was dropped meanwhile, as Docker's does."""

    def __init__(self, sandbox: str, name: str, max_files: int | None = None, since_now: bool = False):
        """`since_now`: only what is written from now on."""
        self.sandbox, self.name = sandbox, name
        self.rotates = max_files is not None
        self.sources = [fd for fd in map(self._open, names(name, max_files)) if fd is not None]
        if since_now and self.sources:
            for fd in self.sources[:-1]:
                os.close(fd)
            self.sources = self.sources[-1:]
            os.lseek(self.sources[0], 0, os.SEEK_END)

    def _open(self, name: str) -> int | None:
        try:
            return open_beneath(self.sandbox, name)
        except FileNotFoundError:
            return None                 # not written yet (an external program may write none)

    def read(self, size: int) -> bytes:
        while True:
            if not self.sources:
                fd = self._open(self.name)
                if fd is None:
                    return b""
                self.sources.append(fd)
            chunk = os.read(self.sources[0], size)
            if chunk:
                return chunk
            if len(self.sources) == 1 and not self._rotated():
                return b""
            # Renamed away: what was written before the rename is still to read, then the next.
            chunk = os.read(self.sources[0], size) if len(self.sources) == 1 else b""
            if chunk:
                return chunk
            os.close(self.sources.pop(0))

    def _rotated(self) -> bool:
        """Whether the file being written is no longer the one we read (once renamed, the old
        file gains nothing more)."""
        if not self.rotates:
            return False
        try:
            now = os.stat(os.path.join(self.sandbox, self.name), follow_symlinks=False)
        except FileNotFoundError:
            return False
        ours = os.fstat(self.sources[0])
        return (now.st_dev, now.st_ino) != (ours.st_dev, ours.st_ino)

    def close(self) -> None:
        for fd in self.sources:
            os.close(fd)
        self.sources = []
