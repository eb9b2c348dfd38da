"""Atomic files: every piece of state corral keeps on disk is written through here; the one
way corral opens a file in a directory that a task writes in (its sandbox); the directories
that hold one directory per container (spread_subdirectories); and the small file and fd steps
the cold paths share without heavier imports (JSON by the C scanner and encoder, a program on a
PATH, a unix socket's path short enough, draining a wake-up fd)."""

from __future__ import annotations

import errno
import os
import stat
from _thread import get_ident     # threading's, without importing threading on the cold path

from .types import CorralError


class DamagedFile(CorralError):
    def __init__(self, path: str, problem: str):
        super().__init__(f"damaged state file {path}: {problem}")
        self.path = path


def write_atomic(path: str, data: bytes | str, *, durable: bool = False) -> None:
    """Write a temp file beside `path`, then rename it over: readers see the old or the new file, whole.

    durable=True also fsyncs the file and its directory, for state that must survive a power loss
    (the runtime dir is a tmpfs, where that buys nothing).
    """
    tmp = _write_temp(path, data, durable)
    try:
        os.rename(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    if durable:
        _sync_dir(path)


def write_once(path: str, data: bytes | str) -> bool:
    """Write `path`, whole, unless it exists: of writers racing for it the first wins (link(2)
    never replaces a file, where rename(2) would). False when another's file was there first."""
    tmp = _write_temp(path, data, False)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)


def _write_temp(path: str, data: bytes | str, durable: bool) -> str:
    """A temp file beside `path` holding `data`: named per process and thread, so that no two
    writers share one."""
    if isinstance(data, str):
        data = data.encode()
    tmp = f"{path}.tmp.{os.getpid()}.{get_ident()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    return tmp


def _sync_dir(path: str) -> None:
    dfd = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def write_json(path: str, value, *, durable: bool = False) -> None:
    write_atomic(path, _json(value), durable=durable)


def write_json_once(path: str, value) -> bool:
    """write_once for a JSON value: False when another writer's value was there first."""
    return write_once(path, _json(value))


def _json(value) -> str:
    import json
    return json.dumps(value, sort_keys=True) + "\n"


def read_json(path: str, default=FileNotFoundError):
    """The JSON value in `path`; `default` when it does not exist; DamagedFile when it cannot be parsed."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        if default is FileNotFoundError:
            raise
        return default
    try:
        return decode_json(raw)
    except ValueError as e:
        raise DamagedFile(path, f"not valid JSON ({e})") from None


_WHITESPACE = " \t\n\r"      # JSON's


class _ScannerContext:
    """What json.JSONDecoder gives its C scanner, with json.loads's defaults."""
    strict = True
    object_hook = object_pairs_hook = None
    parse_float, parse_int = float, int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}.__getitem__


_scan = None        # the C scanner, made on first use: making one costs more than a small file's parse


def decode_json(raw: bytes):
    """json.loads(raw) of the UTF-8 that corral writes, by the json package's own C scanner
    (_json): the package's import compiles regular expressions (re, enum), ~10 ms of a cold
    `corral exec`, which reads its state here and nothing else of json's. One scanner serves
    every call, as json.loads's default decoder does."""
    global _scan
    if _scan is None:
        try:
            from _json import make_scanner
        except ImportError:                 # an interpreter without the accelerator
            import json
            return json.loads(raw)
        _scan = make_scanner(_ScannerContext)
    text = raw.decode("utf-8").strip(_WHITESPACE)
    try:
        value, end = _scan(text, 0)
    except StopIteration as e:
        raise ValueError(f"expecting a value at character {e.value}") from None
    if end != len(text):
        raise ValueError(f"extra data at character {end}")
    return value


def encode_json(value) -> bytes:
    """json.dumps(value) as compact UTF-8, by the json package's C encoder (_json), for the
    reason decode_json gives: a cold `corral exec` sends its request to the container's init
    in JSON."""
    try:
        from _json import encode_basestring_ascii, make_encoder
    except ImportError:                     # an interpreter without the accelerator
        import json
        return json.dumps(value, separators=(",", ":")).encode()
    encode = make_encoder(None, None, encode_basestring_ascii, None, ":", ",", False, False, True)
    return "".join(encode(value, 0)).encode()


class short_socket_path:
    """A unix socket's path short enough for sun_path (108 bytes, and a runtime dir with a
    128-character container id is longer): the same file, through an fd on its directory.
        with short_socket_path(path) as short: sock.bind(short)"""

    def __init__(self, path: str):
        self.dir_fd = os.open(os.path.dirname(path) or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.path = f"/proc/self/fd/{self.dir_fd}/{os.path.basename(path)}"

    def __enter__(self) -> str:
        return self.path

    def __exit__(self, *exc):
        os.close(self.dir_fd)


class UnsafeFile(CorralError):
    """A file in a task's directory that corral, as root, must not open: a link, a FIFO, a device."""


def open_beneath(directory: str, name: str, flags: int = os.O_RDONLY, mode: int = 0o644) -> int:
    """An fd on `name`, one component, in `directory`, a directory a task can write in, opened
    as corral (root) must open the task's files: never through a symlink the task put there
    (O_NOFOLLOW: a link to /etc/shadow would be read, or appended to, as root), and only a
    regular file (a FIFO would hang the reader, a device would be read as root). A writer also
    refuses a file with other hard links, and truncates (O_TRUNC) only once the file passed."""
    if name in ("", ".", "..") or "/" in name:
        raise ValueError(f"not a file name: {name!r}")
    truncate = flags & os.O_TRUNC
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = os.open(name, (flags & ~os.O_TRUNC) | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode,
                     dir_fd=dir_fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENXIO):       # a symlink; a FIFO with no reader, opened to write
            raise UnsafeFile(f"{os.path.join(directory, name)} is not a regular file (a link or a special "
                             f"file put in its place): corral does not open it") from None
        raise
    finally:
        os.close(dir_fd)
    info = os.fstat(fd)
    writer = flags & (os.O_WRONLY | os.O_RDWR)
    if not stat.S_ISREG(info.st_mode) or (writer and info.st_nlink > 1):
        os.close(fd)
        raise UnsafeFile(f"{os.path.join(directory, name)} is not a regular file of its own (a special file "
                         f"or a hard link put in its place): corral does not open it")
    os.set_blocking(fd, True)
    if truncate:
        os.ftruncate(fd, 0)
    return fd


def read_text(path: str, default: str | None = None) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return default


def remove_tree(top: str) -> None:
    """rm -rf without following symlinks, by directory fds as shutil.rmtree does; without
    shutil, whose import (it pulls in bz2, lzma and zlib) costs a cold launch 5 ms."""
    if not os.path.lexists(top):
        return
    # Each root_fd is open only while its step of the walk is being handled.
    for _root, dirs, files, root_fd in os.fwalk(top, topdown=False):
        for name in files:
            _remove_entry(name, root_fd)
        for name in dirs:
            _remove_entry(name, root_fd, directory=True)
    try:
        os.rmdir(top)
    except FileNotFoundError:
        pass


def _remove_entry(name: str, dir_fd: int, directory: bool = False) -> None:
    try:
        if directory:
            try:
                os.rmdir(name, dir_fd=dir_fd)
                return
            except NotADirectoryError:   # a symlink to a directory: the link goes, not its target
                pass
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def drain(fd: int) -> bool:
    """Read a non-blocking fd (a wake-up pipe, an eventfd, inotify) until it would block; whether
    anything was there."""
    got = False
    try:
        while os.read(fd, 4096):
            got = True
    except BlockingIOError:
        pass
    return got


def read_small(path: str, limit: int = 1 << 20) -> str | None:
    """The text of a small file (its first `limit` bytes; bad UTF-8 replaced); None if it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode("utf-8", "replace")
    except OSError:
        return None


def find_program(name: str, path: str) -> str | None:
    """`name` as execvp would find it on `path` (a name with a slash is itself); None if nowhere."""
    if "/" in name:
        return name
    for directory in path.split(":"):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


# ext4's inode flags (FS_IOC_GETFLAGS and SETFLAGS take an int, whatever their encoding says).
_FS_IOC_GETFLAGS, _FS_IOC_SETFLAGS = 0x80086601, 0x40086602
_FS_TOPDIR_FL = 0x00020000
_spread: set[str] = set()           # directories this process has flagged (or found it cannot)


def spread_subdirectories(path: str) -> None:
    """Flag the directory `path` (chattr +T, FS_TOPDIR_FL) so that ext4 places each directory
    made in it as it places those of the root: in a block group of its own choosing (Orlov's
    allocator), where its files go too. Containers come and go by the dozen, and ext4 without
    a journal scans past every inode freed in the last 30 s in a group for each one it makes
    there: with every container's files in one group, a file took 0.2-0.3 ms to make under that
    churn, spread 0.03 ms. Made (mkdir -p) where missing, so that it is flagged before its first
    subdirectory. Once per process and path; a filesystem without these flags (tmpfs,
    overlayfs, ...) is left as it is."""
    if path in _spread:
        return
    os.makedirs(path, exist_ok=True)
    _spread.add(path)
    from array import array
    from fcntl import ioctl
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        flags = array("i", [0])
        ioctl(fd, _FS_IOC_GETFLAGS, flags)
        if not flags[0] & _FS_TOPDIR_FL:
            flags[0] |= _FS_TOPDIR_FL
            ioctl(fd, _FS_IOC_SETFLAGS, flags)
    except OSError:
        pass
    finally:
        os.close(fd)
