"""cgroups/devices: which device nodes a container may read, write and make.

cgroup2 has no devices file: a BPF_PROG_TYPE_CGROUP_DEVICE program, written here (a few
instructions a rule, as runc's devicefilter), is attached to the container's cgroup, and the
kernel asks it at every open and mknod of a device node. cgroups v1 (a host without cgroup2):
the container's devices cgroup denies everything ("a"), then allows each rule.

The cgroup file access is in the small functions `write_v1_rules`, `device_program`,
`load_program` and `attach_program`, self-contained so that a shared cgroups layer can take them.
"""

from __future__ import annotations

import ctypes
import os
import struct

from corral.types import CorralError

from .. import Isolator
from ..devices import DEFAULT_RULES, container_devices
from . import cgroup_for, hierarchies


def write_v1_rules(cgroup_dir: str, rules, deny_all: bool = True) -> None:
    """v1: deny every device (unless `deny_all` is false: adding to a list), then allow each rule."""
    if deny_all:
        with open(os.path.join(cgroup_dir, "devices.deny"), "w") as f:
            f.write("a")
    with open(os.path.join(cgroup_dir, "devices.allow"), "w") as f:
        for rule in rules:
            f.write(rule.rule())
            f.flush()              # one rule per write(2): the kernel parses one line each


# -- cgroup2: the BPF program ------------------------------------------------------------------

_DEV_TYPE = {"b": 1, "c": 2}                  # BPF_DEVCG_DEV_BLOCK, BPF_DEVCG_DEV_CHAR
_ACCESS = {"m": 1, "r": 2, "w": 4}            # BPF_DEVCG_ACC_MKNOD, _READ, _WRITE


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


_LDX_W, _AND_K, _RSH_K, _MOV_K, _MOV_X, _JNE_K, _EXIT = 0x61, 0x57, 0x77, 0xb7, 0xbf, 0x55, 0x95


def device_program(rules) -> bytes:
    """The BPF program that allows exactly `rules` (struct bpf_cgroup_dev_ctx: access_type is
    type | access << 16, then major, minor); 1 allows, 0 denies."""
    program = [
        _insn(_LDX_W, 2, 1, 0), _insn(_AND_K, 2, imm=0xffff),        # r2 = type
        _insn(_LDX_W, 3, 1, 0), _insn(_RSH_K, 3, imm=16),            # r3 = access asked
        _insn(_LDX_W, 4, 1, 4), _insn(_LDX_W, 5, 1, 8),              # r4 = major, r5 = minor
    ]
    for rule in rules:
        checks = []          # (register, value), each jumping past the block when it does not match
        if rule.kind != "a":
            checks.append(("type", _DEV_TYPE[rule.kind]))
        allowed = sum(_ACCESS[letter] for letter in rule.access)
        if allowed != 7:
            checks.append(("access", ~allowed & 7))
        if rule.major is not None:
            checks.append((4, rule.major))
        if rule.minor is not None:
            checks.append((5, rule.minor))
        block = []
        for register, value in checks:
            if register == "type":
                block.append([_insn(_JNE_K, 2, imm=value)])
            elif register == "access":     # r1 = asked & ~allowed; anything left: no match
                block.append([_insn(_MOV_X, 1, 3), _insn(_AND_K, 1, imm=value), _insn(_JNE_K, 1, imm=0)])
            else:
                block.append([_insn(_JNE_K, register, imm=value)])
        block.append([_insn(_MOV_K, 0, imm=1), _insn(_EXIT)])
        flat = [insn for group in block for insn in group]
        # Patch each jump (the last instruction of its group) to land after the block.
        position = 0
        for group in block[:-1]:
            position += len(group)
            code, regs, _off, imm = struct.unpack("<BBhi", flat[position - 1])
            flat[position - 1] = struct.pack("<BBhi", code, regs, len(flat) - position, imm)
        program += flat
    program += [_insn(_MOV_K, 0, imm=0), _insn(_EXIT)]
    return b"".join(program)


_SYS_BPF = {"x86_64": 321, "aarch64": 280}.get(os.uname().machine, 321)
_BPF_PROG_LOAD, _BPF_PROG_ATTACH = 5, 8
_BPF_PROG_TYPE_CGROUP_DEVICE, _BPF_CGROUP_DEVICE, _BPF_F_ALLOW_MULTI, _BPF_F_REPLACE = 15, 6, 2, 4
_libc = ctypes.CDLL(None, use_errno=True)


def _bpf(command: int, attr: ctypes.Array) -> int:
    result = _libc.syscall(_SYS_BPF, command, attr, len(attr))
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf: {os.strerror(err)}")
    return result


def load_program(program: bytes) -> int:
    """BPF_PROG_LOAD a device program; returns its fd."""
    insns = ctypes.create_string_buffer(program, len(program))
    license = ctypes.create_string_buffer(b"Apache-2.0")   # noqa: A001 - the kernel's word
    attr = ctypes.create_string_buffer(128)
    struct.pack_into("<IIQQ", attr, 0, _BPF_PROG_TYPE_CGROUP_DEVICE, len(program) // 8,
                     ctypes.addressof(insns), ctypes.addressof(license))
    struct.pack_into("<I", attr, 68, _BPF_CGROUP_DEVICE)     # expected_attach_type
    return _bpf(_BPF_PROG_LOAD, attr)


def attach_program(cgroup_dir: str, program_fd: int, replace_fd: int | None = None) -> None:
    """Attach a loaded device program to a cgroup2 directory (alongside any its ancestors have,
    which must allow a device too), or put it in the place of the attached `replace_fd`."""
    cgroup_fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        flags = _BPF_F_ALLOW_MULTI | (_BPF_F_REPLACE if replace_fd is not None else 0)
        attr = ctypes.create_string_buffer(struct.pack("<IIIII", cgroup_fd, program_fd, _BPF_CGROUP_DEVICE,
                                                       flags, replace_fd or 0), 32)
        _bpf(_BPF_PROG_ATTACH, attr)
    finally:
        os.close(cgroup_fd)


# -- the isolator ------------------------------------------------------------------------------

class DevicesIsolator(Isolator):
    """Where a cgroup2 hierarchy is mounted (v2 and hybrid hosts: the kernel runs a cgroup2
    device program whatever the v1 devices controller says), a device program on the container's
    cgroup2 cgroup, the launcher's tracking one unless it tracks in the v1 freezer: loaded once
    per rule list and kept, so that a launch costs one bpf(2) attach. Else the v1 devices
    controller."""

    def __init__(self, flags):
        super().__init__(flags)
        self._programs: dict[tuple, int] = {}      # rules -> a loaded program's fd
        self._rules: dict[str, tuple] = {}         # container id -> its rules (cgroup2: to replace its program)

    def _cgroup(self, container_id: str):
        path = f"{self.flags.cgroups_root}/{container_id}"
        if hierarchies().v2:
            return cgroup_for("unified", path)  # the launcher's tracking cgroup: the program goes there
        return cgroup_for("devices", path)

    def prepare(self, container_id, config):
        cgroup = self._cgroup(container_id)
        cgroup.create()
        rules = (*DEFAULT_RULES, *container_devices(config, self.flags))
        if cgroup.version == 1:
            write_v1_rules(cgroup.path, rules)
        else:
            attach_program(cgroup.path, self._program(rules))
            self._rules[container_id] = rules

    def _program(self, rules: tuple) -> int:
        key = tuple(rule.rule() for rule in rules)
        fd = self._programs.get(key)
        if fd is None:
            fd = self._programs[key] = load_program(device_program(rules))
        return fd

    def isolate(self, container_id, pid):
        cgroup = self._cgroup(container_id)
        if cgroup.version == 1 or not _member(pid, cgroup.path):
            cgroup.attach(pid)           # on cgroup2 the launcher's tracking has placed it, unless it tracks in the freezer

    def allow(self, container_id: str, devices) -> None:
        """Let a container this isolator prepared use more devices (what a GPU isolator asks, say):
        v1 adds the lines; cgroup2 puts a program with the longer list in the place of the old one."""
        cgroup = self._cgroup(container_id)
        if cgroup.version == 1:
            write_v1_rules(cgroup.path, devices, deny_all=False)
            return
        old = self._rules.get(container_id)
        if old is None:
            raise CorralError(f"container {container_id}: its device program was attached by another process")
        new = (*old, *devices)
        attach_program(cgroup.path, self._program(new), replace_fd=self._program(old))
        self._rules[container_id] = new

    def cleanup(self, container_id):
        self._rules.pop(container_id, None)
        self._cgroup(container_id).remove()     # the program goes with it; the launcher's tracking copes


def _member(pid: int, cgroup_dir: str) -> bool:
    """Whether `pid` is in the cgroup2 cgroup `cgroup_dir` (its /proc/PID/cgroup "0::" line)."""
    from . import hierarchies
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                return os.path.join(hierarchies().v2, line[3:].strip().lstrip("/")) == cgroup_dir
    return False
