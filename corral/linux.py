"""The Linux system calls Python 3.11's os module lacks, through ctypes, in one place.

unshare, setns, mount, umount2, pivot_root, sethostname, prctl, openat2 with RESOLVE_BENEATH, a
filesystem instance mounted nowhere (fsopen, fsmount), a fork through clone3 that starts the
child in a given cgroup, and a copy of another process's fd (pidfd_getfd); plus reading a
process's start time, which (with its pid) names a process unambiguously although pids are reused.
"""

from __future__ import annotations

import ctypes
import errno
import os
from _signal import SIGCHLD    # signal's C core: the signal module imports enum, milliseconds of a cold exec

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

NAMESPACE_FLAGS = {
    "mnt": CLONE_NEWNS, "uts": CLONE_NEWUTS, "ipc": CLONE_NEWIPC,
    "pid": CLONE_NEWPID, "net": CLONE_NEWNET, "cgroup": CLONE_NEWCGROUP,
}

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MNT_DETACH = 0x2

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
# Resolved here, once: a forked supervisor or init that looked one up first would pay a dlsym
# through every library the process has loaded, 0.03 to 0.2 ms a function.
for _name in ("unshare", "setns", "syscall"):
    getattr(_libc, _name)
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(os.uname().machine, 155)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _b(value: str | bytes | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def mount(source: str | bytes | None, target: str | bytes, fstype: str | bytes | None = None, flags: int = 0,
          data: str | None = None) -> None:
    if _libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)) != 0:
        _check(-1, f"mount {os.fsdecode(target)}")


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), flags), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_libc.syscall(_SYS_PIVOT_ROOT, _b(new_root), _b(put_old)), "pivot_root")


def prctl(option: int, arg2: int = 0, arg3: int = 0, what: str = "prctl") -> int:
    """prctl(2) with up to two arguments (the rest 0); `what` names the step in the error."""
    result = _libc.prctl(option, arg2, arg3, 0, 0)
    if result < 0:
        _check(result, what)
    return result


_PR_CAPBSET_DROP = 24


def drop_bounding(caps) -> None:
    """Drop each capability number of `caps` from this thread's bounding set: one prctl each,
    the kernel has no call for several."""
    for cap in caps:
        if _libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            _check(-1, f"drop bounding capability {cap}")


_libc.capset.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def capset_args(effective: int, permitted: int, inheritable: int) -> ctypes.Array:
    """capset(2)'s header (this process) and its two data structs, for the three sets as masks
    of capability numbers: made beforehand, for capset() to pass as they are."""
    words = [_LINUX_CAPABILITY_VERSION_3, 0]
    for shift in (0, 32):
        words += [(mask >> shift) & 0xFFFFFFFF for mask in (effective, permitted, inheritable)]
    return (ctypes.c_uint32 * len(words))(*words)


def capset(args: ctypes.Array) -> None:
    _check(_libc.capset(args, ctypes.byref(args, 8)), "capset")


_SYS_FSOPEN, _SYS_FSCONFIG, _SYS_FSMOUNT = 430, 431, 432     # the same on x86_64 and aarch64
_FSOPEN_CLOEXEC = _FSMOUNT_CLOEXEC = 1
_FSCONFIG_CMD_CREATE = 6


def detached_mount(fstype: str) -> int:
    """A new instance of `fstype` (proc, sysfs), mounted nowhere: an fd of its root, to look at
    what a fresh instance holds without a mount in any namespace (closing it is the unmount).
    Linux 5.2+; OSError where the kernel lacks the calls or the caller may not mount."""
    fs = _libc.syscall(_SYS_FSOPEN, fstype.encode(), _FSOPEN_CLOEXEC)
    if fs < 0:
        _check(fs, f"fsopen {fstype}")
    try:
        _check(_libc.syscall(_SYS_FSCONFIG, fs, _FSCONFIG_CMD_CREATE, None, None, 0), f"fsconfig {fstype}")
        root = _libc.syscall(_SYS_FSMOUNT, fs, _FSMOUNT_CLOEXEC, 0)
        if root < 0:
            _check(root, f"fsmount {fstype}")
        return root
    finally:
        os.close(fs)


HOST_NAME_MAX = 64


def sethostname(name: str) -> None:
    raw = name.encode()
    if len(raw) > HOST_NAME_MAX:     # the kernel's EINVAL would not say why
        raise OSError(errno.EINVAL, f"sethostname: {name!r} is longer than {HOST_NAME_MAX} bytes")
    _check(_libc.sethostname(raw, len(raw)), "sethostname")


CLONE_INTO_CGROUP = 0x200000000
_SYS_CLONE3 = 435          # the same number on x86_64 and aarch64


class _CloneArgs(ctypes.Structure):
    """struct clone_args, as far as its cgroup field (CLONE_ARGS_SIZE_VER2, Linux 5.7)."""
    _fields_ = [(name, ctypes.c_uint64) for name in ("flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack",
                                                     "stack_size", "tls", "set_tid", "set_tid_size", "cgroup")]


# PyDLL keeps the GIL across the call, as os.fork does; PyOS_*Fork* do os.fork's bookkeeping.
_pyapi = ctypes.PyDLL(None, use_errno=True)
_pyapi.PyOS_BeforeFork.restype = _pyapi.PyOS_AfterFork_Parent.restype = _pyapi.PyOS_AfterFork_Child.restype = None
_clone3_works: bool | None = None       # learnt on first use: None until then


_SYS_OPENAT2 = 437              # the same on every architecture (the unified syscall table)
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_BENEATH = 0x08


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]



def resolve_beneath(dir_fd: int, relative: str) -> int:
    """An O_PATH fd on `relative` within `dir_fd`, resolved by the kernel without ever leaving it
    (a ".." or a link that climbs out, an absolute link: EXDEV). Before Linux 5.6 (no openat2),
    no link is followed at all."""
    flags = os.O_PATH | os.O_CLOEXEC
    how = _OpenHow(flags, 0, _RESOLVE_BENEATH | _RESOLVE_NO_MAGICLINKS)
    # EAGAIN: a rename or mount anywhere on the host while a ".." was resolved, which the kernel
    # cannot prove harmless; openat2(2) says to try again.
    for _attempt in range(100):
        fd = _libc.syscall(_SYS_OPENAT2, dir_fd, relative.encode(), ctypes.byref(how), ctypes.sizeof(how))
        if fd >= 0:
            return fd
        error = ctypes.get_errno()
        if error != errno.EAGAIN:
            break
    if error not in (errno.ENOSYS, errno.EPERM):     # EPERM: a seccomp filter that predates openat2
        raise OSError(error, os.strerror(error), relative)
    return _open_each(dir_fd, relative, flags)


def _open_each(dir_fd: int, relative: str, flags: int) -> int:
    """openat2's refusal by hand: one component at a time, no "..", no link (the last one, if a
    link, is opened as itself, and then refused as no regular file)."""
    parts = [p for p in relative.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise OSError(errno.EXDEV, "a path with '..'", relative)
    fd = os.dup(dir_fd)
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        try:
            next_fd = os.open(part, (flags if last else flags | os.O_DIRECTORY) | os.O_NOFOLLOW, dir_fd=fd)
        finally:
            os.close(fd)
        fd = next_fd
    return fd


def fork_into_cgroup(cgroup_fd: int) -> int | None:
    """os.fork(), the child starting in the cgroup2 directory open as `cgroup_fd`: clone3 with
    CLONE_INTO_CGROUP (Linux 5.7+), so that no cgroup.procs write has to move it there. None
    where the kernel lacks it (nothing forked: fork and move the child instead).

    Unlike glibc's fork(), the raw system call leaves the child's thread descriptor with the
    parent's thread id: the child must not use pthread_kill() or raise() (Python does not)."""
    global _clone3_works
    if _clone3_works is False:
        return None
    args = _CloneArgs(flags=CLONE_INTO_CGROUP, exit_signal=SIGCHLD, cgroup=cgroup_fd)
    _pyapi.PyOS_BeforeFork()
    pid = _pyapi.syscall(ctypes.c_long(_SYS_CLONE3), ctypes.byref(args), ctypes.c_size_t(ctypes.sizeof(args)))
    if pid == 0:
        _pyapi.PyOS_AfterFork_Child()
        return 0
    err = ctypes.get_errno()
    _pyapi.PyOS_AfterFork_Parent()
    if pid > 0:
        _clone3_works = True
        return pid
    if err in (errno.ENOSYS, errno.E2BIG) or (err == errno.EINVAL and _clone3_works is None):
        _clone3_works = False     # no clone3 (< 5.3), or none with a cgroup field (< 5.7)
        return None
    raise OSError(err, f"clone3: {os.strerror(err)}")




def _stat(pid: int) -> list[bytes] | None:
    """/proc/PID/stat's fields from the third (state) on, or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    return stat[stat.rindex(b")") + 2:].split()


def process_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), or None if gone."""
    fields = _stat(pid)
    return int(fields[19]) if fields else None


def pidfd_of(pid: int | None, start_time: int | None) -> int | None:
    """A pidfd of process `pid` if it is still the one that started at `start_time` (as
    pids.json records it; a zombie too), else None. The pidfd pins the process: only once it is
    open does the start time tell it from a later process that reused the pid."""
    if not pid or start_time is None:
        return None
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    if process_start_time(pid) != start_time:
        os.close(pidfd)
        return None
    return pidfd


_SYS_PIDFD_GETFD = 438         # the unified syscall table's, as openat2's


def pidfd_getfd(pidfd: int, fd: int) -> int | None:
    """A copy (close-on-exec) of the file that the process of `pidfd` holds as its fd `fd`, as
    SCM_RIGHTS would hand it over (Linux 5.6+; the caller needs ptrace's right over it: root's
    CAP_SYS_PTRACE); None once the process has exited or closed that fd."""
    copy = _libc.syscall(_SYS_PIDFD_GETFD, pidfd, fd, 0)
    if copy >= 0:
        return copy
    error = ctypes.get_errno()
    if error in (errno.ESRCH, errno.EBADF):
        return None
    raise OSError(error, f"pidfd_getfd: {os.strerror(error)}")


def is_same_process(pid: int | None, start_time: int | None) -> bool:
    return bool(pid) and start_time is not None and process_start_time(pid) == start_time


def is_running(pid: int | None, start_time: int | None) -> bool:
    """Whether that process exists and has not exited: a zombie (exited, not yet reaped by its
    parent) is the same process, but it runs no more."""
    fields = _stat(pid) if pid and start_time is not None else None
    return fields is not None and int(fields[19]) == start_time and fields[0] not in (b"Z", b"X")


def close_fds_except(keep: set[int]) -> None:
    """Close every fd above 2 not in `keep`: a forked child that lives on must not hold its
    parent's sockets, pipes and pidfds open."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def boot_id() -> str:
    with open("/proc/sys/kernel/random/boot_id") as f:
        return f.read().strip()
