"""cgroup2 devices (runc: fs2/devices.go and devicefilter): cgroup2 has no devices files; the
access list is a BPF_PROG_TYPE_CGROUP_DEVICE program attached to the cgroup, a few instructions a
rule, which the kernel asks at every open and mknod of a device node. Rules are v1's lines
('c 1:3 rwm', '*' for any number), so that callers write the same rules for either version.

A program is loaded once per rule list in a process and kept (its fd), so that a launch costs
one bpf(2) attach."""

from __future__ import annotations

import ctypes
import os
import struct

from . import V2Cgroup


class _Rule:
    """One rule of v1's syntax, taken apart: kind ('a', 'b' or 'c'), major and minor (None: any),
    access. (A plain class: typing's NamedTuple costs a cold `corral run` ~7 ms of imports.)"""
    __slots__ = ("kind", "major", "minor", "access")

    def __init__(self, line: str):
        self.kind, numbers, self.access = line.split()
        major, _, minor = numbers.partition(":")
        self.major = None if major == "*" else int(major)
        self.minor = None if minor == "*" else int(minor)


_DEV_TYPE = {"b": 1, "c": 2}                  # BPF_DEVCG_DEV_BLOCK, BPF_DEVCG_DEV_CHAR
_ACCESS = {"m": 1, "r": 2, "w": 4}            # BPF_DEVCG_ACC_MKNOD, _READ, _WRITE


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


_LDX_W, _AND_K, _RSH_K, _MOV_K, _MOV_X, _JNE_K, _EXIT = 0x61, 0x57, 0x77, 0xb7, 0xbf, 0x55, 0x95


def device_program(rules: list[str]) -> bytes:
    """The BPF program that allows exactly `rules`, v1's lines ('c 1:3 rwm'; struct
    bpf_cgroup_dev_ctx: access_type is type | access << 16, then major, minor); 1 allows, 0 denies."""
    program = [
        _insn(_LDX_W, 2, 1, 0), _insn(_AND_K, 2, imm=0xffff),        # r2 = type
        _insn(_LDX_W, 3, 1, 0), _insn(_RSH_K, 3, imm=16),            # r3 = access asked
        _insn(_LDX_W, 4, 1, 4), _insn(_LDX_W, 5, 1, 8),              # r4 = major, r5 = minor
    ]
    for rule in map(_Rule, rules):
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



_loaded: dict[tuple[str, ...], int] = {}       # rule list -> a loaded program's fd, kept for the process
_attached: dict[str, tuple[str, ...]] = {}     # cgroup path -> the rules of the program attached there by this process


def _program_fd(rules: tuple[str, ...]) -> int:
    fd = _loaded.get(rules)
    # A process that closes the fds it inherited (the agent's launch server) may have closed it,
    # and the number may name another file since: one readlink says whether it is still ours.
    if fd is None or not _is_program(fd):
        fd = _loaded[rules] = load_program(device_program(list(rules)))
    return fd


def _is_program(fd: int) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:bpf-prog"
    except OSError:
        return False


class Devices(V2Cgroup):

    def set_rules(self, rules: list[str]) -> None:
        """Allow exactly `rules` (and nothing else) in this cgroup."""
        key = tuple(rules)
        attach_program(self.path, _program_fd(key))
        _attached[self.path] = key

    def add_rules(self, rules: list[str]) -> None:
        """Allow more: a program with the longer list takes the place of the one set_rules
        attached (in this process: the loaded program is the handle to replace it by)."""
        old = _attached.get(self.path)
        if old is None:
            from .. import CgroupsUnavailable
            raise CgroupsUnavailable(f"{self.path}: its device program was attached by another process")
        new = (*old, *rules)
        attach_program(self.path, _program_fd(new), replace_fd=_program_fd(old))
        _attached[self.path] = new

    def remove(self, timeout: float = 5.0) -> None:
        _attached.pop(self.path, None)
        super().remove(timeout)
