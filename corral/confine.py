"""What init does last, just before the task's exec: confine it (runc's and Docker's defaults).

The confinement isolators (linux/capabilities, linux/nnp, linux/seccomp, linux/devices,
linux/masked_paths, posix/rlimits) each fill part of a `Confinement`; init applies the whole in
`confine()`, in the one order that works: what needs privileges first (masks and read-only
remounts, device nodes, raised rlimits), then the capability sets, no_new_privs, and the
seccomp filter last, so that the filter does not stop init's own set-up.

Runs in init, in the container's private mount namespace, after pivot_root: paths are the
container's. The seccomp filter comes compiled (isolators/seccomp.py): loading it is one prctl.
"""

from __future__ import annotations

import ctypes
import os
import stat

from . import linux
from .record import Record

PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


class DeviceNode(Record):
    """A device node to make in the container: path, 'c' or 'b', major, minor, mode."""
    path: str
    kind: str
    major: int
    minor: int
    mode: int = 0o666


class Confinement(Record):
    """What init applies before the task's exec; the empty one changes nothing."""
    bounding: frozenset | None = None      # capability numbers; None: leave the set as it is
    effective: frozenset | None = None     # effective = permitted (and, if narrower than bounding, ambient)
    no_new_privs: bool = False
    seccomp_filter: bytes | None = None    # a compiled BPF program (struct sock_filter array)
    masked_paths: tuple = ()               # hidden: /dev/null over files, an empty read-only tmpfs over directories
    readonly_paths: tuple = ()             # bind-remounted read-only
    device_nodes: tuple = ()               # DeviceNode, made in the container's /dev
    rlimits: tuple = ()                    # (resource number, soft, hard)

    def merge(self, other: "Confinement") -> None:
        for name in ("bounding", "effective", "seccomp_filter"):
            if getattr(other, name) is not None:
                setattr(self, name, getattr(other, name))
        self.no_new_privs = self.no_new_privs or other.no_new_privs
        for name in ("masked_paths", "readonly_paths", "device_nodes", "rlimits"):
            setattr(self, name, tuple(getattr(self, name)) + tuple(getattr(other, name)))


def confine(c: Confinement | None) -> None:
    """Apply `c` to this process (init); the task inherits it all across its exec."""
    if c is None:
        return
    for node in c.device_nodes:
        make_device_node(node)
    for path in c.masked_paths:
        mask(path)
    for path in c.readonly_paths:
        make_readonly(path)
    if c.rlimits:
        import resource
        for number, soft, hard in c.rlimits:
            resource.setrlimit(number, (soft, hard))
    if c.seccomp_filter is not None and not c.no_new_privs:
        # Without no_new_privs the kernel takes a filter only from a holder of CAP_SYS_ADMIN:
        # load it while init still has it (runc does the same).
        load_seccomp(c.seccomp_filter)
    if c.bounding is not None or c.effective is not None:
        set_capabilities(c.bounding, c.effective)
    if c.no_new_privs:
        import _prctl
        _prctl.prctl(_prctl.PR_SET_NO_NEW_PRIVS, 1)
        if c.seccomp_filter is not None:
            load_seccomp(c.seccomp_filter)


def make_device_node(node: DeviceNode) -> None:
    kind = stat.S_IFCHR if node.kind == "c" else stat.S_IFBLK
    os.makedirs(os.path.dirname(node.path), exist_ok=True)
    try:
        os.unlink(node.path)
    except FileNotFoundError:
        pass
    old = os.umask(0)
    try:
        os.mknod(node.path, kind | node.mode, os.makedev(node.major, node.minor))
    finally:
        os.umask(old)


def mask(path: str) -> None:
    """Hide `path` as runc does: /dev/null over a file, an empty read-only tmpfs over a directory.
    A path this kernel lacks needs no hiding. (lstat says which: a bind of /dev/null tried on a
    directory first would fail, but costs a first launch milliseconds in the kernel.)"""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        linux.mount("tmpfs", path, "tmpfs", linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
    else:
        linux.mount("/dev/null", path, None, linux.MS_BIND)


def make_readonly(path: str) -> None:
    try:
        linux.mount(path, path, None, linux.MS_BIND | linux.MS_REC)
    except FileNotFoundError:
        return
    linux.mount(None, path, None, linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY
                | linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC | linux.MS_REC)


def set_capabilities(bounding: frozenset | None, effective: frozenset | None) -> None:
    """Drop what is not in `bounding` from the bounding set, then make effective = permitted =
    `effective`, inheritable empty (as Docker since CVE-2022-24769), ambient empty. An effective
    set narrower than the bounding one must survive the task's exec as root, where the kernel
    would hand root the whole bounding set: then those capabilities ride in the ambient set, and
    SECBIT_NOROOT keeps root from getting the rest (Mesos's rule for effective_capabilities)."""
    # python-prctl's C functions themselves: its Python wrappers rebuild lists per call, a
    # third of a millisecond of every launch, and its module costs a cold exec milliseconds.
    import _prctl
    all_caps = range(_prctl.CAP_LAST_CAP + 1)      # prctl.ALL_CAPS, as that module makes it
    if bounding is not None:
        for cap in all_caps:
            if cap not in bounding:
                _prctl.prctl(_prctl.PR_CAPBSET_DROP, cap)
    _check(_libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clear ambient capabilities")
    if effective is None:
        effective = bounding
    ambient = bounding is not None and effective != bounding
    if ambient:     # needs CAP_SETPCAP: before the sets shrink
        bits = _prctl.prctl(_prctl.PR_GET_SECUREBITS)
        _prctl.prctl(_prctl.PR_SET_SECUREBITS, bits | 1 << _prctl.SECURE_NOROOT | 1 << _prctl.SECURE_NOROOT_LOCKED)
    inheritable = effective if ambient else frozenset()
    kept = list(effective)
    dropped = [cap for cap in all_caps if cap not in effective]
    _prctl.set_caps(kept, kept, list(inheritable), dropped, dropped,
                    [cap for cap in all_caps if cap not in inheritable])
    for cap in (effective if ambient else ()):
        _check(_libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0), "raise an ambient capability")


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


def load_seccomp(program: bytes) -> None:
    """Install a compiled seccomp filter (8 bytes per BPF instruction) on this process."""
    fprog = _SockFprog(len(program) // 8, program)
    _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0), "load the seccomp filter")


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"cannot {what}: {os.strerror(err)}")
