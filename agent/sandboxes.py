"""The containers' sandboxes as mesos-agent's Files process serves them: READ_FILE and LIST_FILES
of the v1 API, GET /files/read and /files/browse (agent/api.py and agent/queries.py translate).

Paths are virtual, as Mesos's: a directory is *attached* at a path and a request names a file by
the longest attached prefix and what follows it. mesos-agent attaches an executor's sandbox at
its own real path (/var/lib/mesos/slaves/.../runs/<id>); corral attaches each container's sandbox
at its own real path too, <work_dir>/containers/<id>.

What follows the prefix is resolved by the kernel beneath the sandbox (openat2's
RESOLVE_BENEATH): a link that stays inside is followed, as Mesos's realpath check allows; one
that leads out of the sandbox, or a "..", is refused (400), never followed. Only regular files
are read (a FIFO would hold the reader) and directories listed.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import stat

from corral import linux
from corral.types import CorralError, InvalidInput

READ_MAX = 16 * os.sysconf("SC_PAGESIZE")      # Mesos caps a read at 16 pages


class FileNotFound(CorralError):
    """No file at the path asked for (HTTP 404)."""


def attached(agent) -> dict[str, str]:
    """Virtual path -> the directory attached there: each container's sandbox at itself."""
    root = os.path.join(os.path.abspath(agent.flags.work_dir), "containers")
    return {os.path.join(root, cid): os.path.join(root, cid) for cid in agent.records}


def read(attached: dict[str, str], path: str, offset: int, length: int | None) -> tuple[int, bytes]:
    """(the file's size, up to `length` bytes (READ_MAX at most) from `offset`); past the end, none."""
    fd = _open(attached, path, directory=False)
    try:
        size = os.fstat(fd).st_size
        if offset >= size or length == 0:
            return size, b""
        return size, os.pread(fd, min(size - offset if length is None else length, READ_MAX), offset)
    finally:
        os.close(fd)


def browse(attached: dict[str, str], path: str) -> list[dict]:
    """The directory's entries as Mesos's FileInfo (v1 JSON: mtime a TimeInfo, mode a number),
    sorted by path; links are listed as links, not followed."""
    fd = _open(attached, path, directory=True)
    try:
        base = path.rstrip("/") or "/"
        infos = []
        with os.scandir(fd) as entries:
            for entry in entries:
                try:
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:       # gone since it was listed
                    continue
                infos.append(file_info(os.path.join(base, entry.name), info))
        return sorted(infos, key=lambda i: i["path"])
    finally:
        os.close(fd)


def file_info(path: str, info: os.stat_result) -> dict:
    """Mesos's FileInfo (createFileInfo: mtime in whole seconds, owner and group by name)."""
    return {"path": path, "nlink": info.st_nlink, "size": info.st_size,
            "mtime": {"nanoseconds": int(info.st_mtime) * 1_000_000_000}, "mode": info.st_mode,
            "uid": _name(pwd.getpwuid, info.st_uid), "gid": _name(grp.getgrgid, info.st_gid)}


def browse_entry(info: dict) -> dict:
    """A FileInfo as /files/browse shows it (Mesos's model(FileInfo)): mtime in seconds, mode as ls -l."""
    mode = info["mode"]
    return {**info, "mtime": info["mtime"]["nanoseconds"] / 1e9, "mode": stat.filemode(mode)}


def _name(lookup, number: int) -> str:
    try:
        return lookup(number)[0]
    except KeyError:
        return str(number)


def _open(attached: dict[str, str], path: str, directory: bool) -> int:
    """A read-only fd on the directory, or the regular file, that `path` names, resolved beneath
    its attached directory. What is found is looked at before it is opened for reading (through
    an O_PATH fd): a device or a FIFO is never opened."""
    if not path:
        raise InvalidInput('a "path" is needed, such as the sandbox\'s own')
    if "\0" in path:
        raise InvalidInput("the path holds a NUL character")
    parts = [p for p in path.split("/") if p]
    for cut in range(len(parts), 0, -1):
        sandbox = attached.get("/" + "/".join(parts[:cut]))
        if sandbox is not None:
            rest = "/".join(parts[cut:]) or "."
            break
    else:
        raise FileNotFound(f"no such file: {path} (nothing is attached there)")
    try:
        top = os.open(sandbox, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise FileNotFound(f"no such file: {path} (its sandbox is gone)") from None
    try:
        found = linux.resolve_beneath(top, rest)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            raise FileNotFound(f"no such file: {path}") from None
        if e.errno in (errno.EXDEV, errno.ELOOP):
            raise InvalidInput(f"{path} is inaccessible: it leads out of its sandbox") from None
        if e.errno == errno.EACCES:
            raise InvalidInput(f"{path} is inaccessible: permission denied") from None
        raise
    finally:
        os.close(top)
    try:
        mode = os.fstat(found).st_mode
        if directory and not stat.S_ISDIR(mode):
            raise InvalidInput(f"not a directory: {path}")
        if not directory and stat.S_ISDIR(mode):
            raise InvalidInput(f"cannot read a directory: {path}")
        if not directory and not stat.S_ISREG(mode):
            raise InvalidInput(f"not a regular file: {path}")
        return os.open(f"/proc/self/fd/{found}", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(found)
