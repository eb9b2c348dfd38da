"""What init does last, just before the task's exec: confine it (runc's and Docker's defaults).

The confinement isolators (linux/capabilities, linux/nnp, linux/seccomp, linux/devices,
linux/masked_paths, posix/rlimits) each fill part of a `Confinement`. The launcher turns the
whole into `Steps` (`steps()`): the capability sets as the masks capset(2) takes, the seccomp
program as the struct prctl(2) takes, the masks and remounts as a list, made once per distinct
confinement in a process and kept. init, a fork of the launcher, applies them in `confine()`:
system calls on data made beforehand, so that it touches (and copies) few pages of the
launcher's memory on its way to the task.

The order is the one that works: what needs privileges first (device nodes, masks and
read-only remounts, raised rlimits), then the capability sets, no_new_privs, and the seccomp
filter last, so that the filter does not stop init's own set-up.

Runs in init, in the container's private mount namespace, after pivot_root: paths are the
container's.
"""

from __future__ import annotations

import ctypes
import os
import stat
import sys

from . import linux
from .record import Record

PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
PR_GET_SECUREBITS, PR_SET_SECUREBITS = 27, 28
SECURE_NOROOT, SECURE_NOROOT_LOCKED = 1 << 0, 1 << 1
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2


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
    masked_paths: tuple = ()               # hidden: /dev/null over a file, an empty read-only tmpfs over a directory
    masked_dirs: tuple = ()                # directories among them, known beforehand: init tries no bind first
    readonly_paths: tuple = ()             # bind-remounted read-only
    device_nodes: tuple = ()               # DeviceNode, made in the container's /dev
    rlimits: tuple = ()                    # (resource number, soft, hard)
    init_serves_exec: bool = True          # False: the seccomp filter forbids what init serves execs with

    def merge(self, other: "Confinement") -> None:
        for name in ("bounding", "effective", "seccomp_filter"):
            if getattr(other, name) is not None:
                setattr(self, name, getattr(other, name))
        self.no_new_privs = self.no_new_privs or other.no_new_privs
        self.init_serves_exec = self.init_serves_exec and other.init_serves_exec
        for name in ("masked_paths", "masked_dirs", "readonly_paths", "device_nodes", "rlimits"):
            setattr(self, name, tuple(getattr(self, name)) + tuple(getattr(other, name)))

    def key(self) -> tuple:
        return tuple(tuple(n._values() for n in value) if name == "device_nodes" else value
                     for name, value in zip(self._fields, self._values()))


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


# What init mounts, by kind: (kind, path).
_MASK, _MASK_DIR, _READONLY = "mask", "mask-dir", "readonly"
_TMPFS_FLAGS = linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
_READONLY_FLAGS = linux.MS_BIND | linux.MS_REMOUNT | linux.MS_REC | _TMPFS_FLAGS


class Steps:
    """A Confinement made ready for init: see steps(). `confinement`: what it was made from."""
    __slots__ = ("confinement", "device_nodes", "mounts", "rlimits", "drop_bounding", "ambient", "capsets",
                 "no_new_privs", "seccomp", "program")

    def __init__(self, c: Confinement):
        self.confinement = c
        self.device_nodes = c.device_nodes
        # Paths as bytes: init passes them to mount(2) as they are.
        self.mounts = tuple([(_MASK_DIR if path in c.masked_dirs else _MASK, os.fsencode(path)) for path in c.masked_paths]
                            + [(_READONLY, os.fsencode(path)) for path in c.readonly_paths])
        self.rlimits = c.rlimits
        self.drop_bounding, self.ambient, self.capsets = _capabilities(c.bounding, c.effective)
        self.no_new_privs = c.no_new_privs
        self.program = None if c.seccomp_filter is None else _SockFprog(len(c.seccomp_filter) // 8, c.seccomp_filter)
        self.seccomp = None if self.program is None else ctypes.addressof(self.program)

    def apply(self) -> None:
        """confine(self), for init: it has the steps, and makes no import of its own (the
        supervisor's module imports nothing of confinement, for launches that have none)."""
        confine(self)


_steps: dict[tuple, Steps] = {}


def steps(c: Confinement | None) -> Steps | None:
    """`c` made ready for init, in the launcher: the same confinement is made once per process."""
    if c is None:
        return None
    key = c.key()
    made = _steps.get(key)
    if made is None:
        if len(_steps) >= 64:         # containers with devices of their own each differ: stay small
            _steps.clear()
        made = _steps[key] = Steps(c)
    return made


def _capabilities(bounding: frozenset | None, effective: frozenset | None):
    """(the bounding capabilities to drop, the ambient ones to raise, capset's argument) for
    the sets `bounding` and `effective` (None: leave them); see set_capabilities()."""
    if bounding is None and effective is None:
        return (), (), None
    drop = () if bounding is None else tuple(cap for cap in range(_cap_last_cap() + 1) if cap not in bounding)
    effective = bounding if effective is None else effective
    ambient = tuple(sorted(effective)) if bounding is not None and effective != bounding else ()
    mask = sum(1 << cap for cap in effective)
    return drop, ambient, linux.capset_args(effective=mask, permitted=mask, inheritable=mask if ambient else 0)


def _cap_last_cap() -> int:
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return int(f.read())


def confine(s: Steps | None) -> None:
    """Apply `s` to this process (init); the task inherits it all across its exec."""
    if s is None:
        return
    for node in s.device_nodes:
        make_device_node(node)
    for kind, path in s.mounts:
        if kind == _READONLY:
            make_readonly(path)
        else:
            mask(path, kind == _MASK_DIR)
    if s.rlimits:
        import resource
        for number, soft, hard in s.rlimits:
            resource.setrlimit(number, (soft, hard))
    if s.seccomp is not None and not s.no_new_privs:
        # Without no_new_privs the kernel takes a filter only from a holder of CAP_SYS_ADMIN:
        # load it while init still has it (runc does the same).
        load_seccomp(s.seccomp)
    if s.capsets is not None:
        set_capabilities(s.drop_bounding, s.ambient, s.capsets)
    if s.no_new_privs:
        linux.prctl(PR_SET_NO_NEW_PRIVS, 1, what="set no_new_privs")
        if s.seccomp is not None:
            load_seccomp(s.seccomp)


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


def mask(path: str, directory: bool = False) -> None:
    """Hide `path` as runc does: /dev/null over a file, an empty read-only tmpfs over a
    directory (a bind of a file onto one fails with ENOTDIR). A path the container lacks needs
    no hiding."""
    try:
        if not directory:
            try:
                linux.mount("/dev/null", path, None, linux.MS_BIND)
                return
            except NotADirectoryError:
                pass
        linux.mount("tmpfs", path, "tmpfs", _TMPFS_FLAGS)
    except FileNotFoundError:
        pass


def make_readonly(path: str) -> None:
    try:
        linux.mount(path, path, None, linux.MS_BIND | linux.MS_REC)
    except FileNotFoundError:
        return
    linux.mount(None, path, None, _READONLY_FLAGS)


def set_capabilities(drop_bounding: tuple, ambient: tuple, capsets) -> None:
    """Drop `drop_bounding` from the bounding set, then set effective, permitted and
    inheritable as `capsets` says (inheritable empty, as Docker since CVE-2022-24769), ambient
    empty: capset keeps of the ambient set only what is both permitted and inheritable. An
    effective set narrower than the bounding one must survive the task's exec as root, where the
    kernel would hand root the whole bounding set: then those capabilities (`ambient`) ride in
    the ambient set, and SECBIT_NOROOT keeps root from getting the rest (Mesos's rule for
    effective_capabilities)."""
    _drop_bounding(drop_bounding)
    if ambient:     # needs CAP_SETPCAP: before the sets shrink
        bits = linux.prctl(PR_GET_SECUREBITS)
        linux.prctl(PR_SET_SECUREBITS, bits | SECURE_NOROOT | SECURE_NOROOT_LOCKED, what="set securebits")
    linux.capset(capsets)
    for cap in ambient:
        linux.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, what="raise an ambient capability")


def _drop_bounding(caps) -> None:
    """linux.drop_bounding, through python-prctl's C call where it is loaded (in init: the
    supervisor's prctl, whose call init has made already for its parent-death signal) rather
    than ctypes: in a fresh fork each page a call touches is a copy-on-write fault, and so the
    27 drops take half the time. ctypes for a capability newer than python-prctl's libcap knows,
    and where it is not loaded (an exec's child: its import alone costs 0.7 ms)."""
    loaded = sys.modules.get("_prctl")
    for cap in caps:
        if loaded is None:
            linux.drop_bounding((cap,))
            continue
        try:
            loaded.prctl(loaded.PR_CAPBSET_DROP, cap)
        except ValueError:
            linux.drop_bounding((cap,))
        except OSError as e:
            raise OSError(e.errno, f"drop bounding capability {cap}: {e.strerror}") from None


def load_seccomp(fprog: int) -> None:
    """Install a seccomp filter (`fprog`: the address of its struct sock_fprog) on this process."""
    linux.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, fprog, what="load the seccomp filter")
