"""isolators/seccomp_bpf.compact(): the rewritten program answers every call as libseccomp's does.

Both programs run in a classic-BPF interpreter (below, the kernel's semantics for what seccomp
accepts) on every call number and architecture where some comparison of either program changes
its answer, and, where the answer depends on the arguments, on every argument at every value
that either program compares it with (and one each side). The kernel's own load and answers are
the confinement tests' (tests/test_confinement.py).
"""

from __future__ import annotations

import json
import os
import struct

import pytest

from corral.isolators.capabilities import ALL, DEFAULT
from corral.isolators.seccomp import DEFAULT_PROFILE, compile_profile, libseccomp_program
from corral.isolators.seccomp_bpf import compact, pack, unpack

_MASK = 0xffffffff
_ALU = {0x00: lambda a, b: a + b, 0x10: lambda a, b: a - b, 0x20: lambda a, b: a * b,
        0x30: lambda a, b: a // b if b else 0, 0x40: lambda a, b: a | b, 0x50: lambda a, b: a & b,
        0x60: lambda a, b: a << (b & 31), 0x70: lambda a, b: a >> (b & 31), 0x80: lambda a, b: -a,
        0x90: lambda a, b: a % b if b else 0, 0xa0: lambda a, b: a ^ b}


def run(insns, nr: int, arch: int, args=(0,) * 6) -> tuple[int, bool]:
    """(the action, whether it read any argument) of a program on one call (struct seccomp_data)."""
    data = struct.pack("<IIQ6Q", nr, arch, 0x1000, *args)
    a = x = pc = 0
    memory = [0] * 16
    read_args = False
    while True:
        code, jt, jf, k = insns[pc]
        pc += 1
        cls, op, src = code & 0x07, code & 0xf0, x if code & 0x08 else k
        if code == 0x20:                                    # ld [k]
            a = struct.unpack_from("<I", data, k)[0]
            read_args |= k >= 16
        elif code == 0x00:
            a = k
        elif code == 0x01:
            x = k
        elif code in (0x60, 0x61):
            a, x = (memory[k], x) if code == 0x60 else (a, memory[k])
        elif code in (0x02, 0x03):
            memory[k] = a if code == 0x02 else x
        elif code == 0x07:
            x = a
        elif code == 0x87:
            a = x
        elif code in (0x06, 0x16):
            return (k if code == 0x06 else a), read_args
        elif cls == 0x04:                                   # BPF_ALU
            a = _ALU[op](a, src) & _MASK
        elif code == 0x05:                                  # ja
            pc += k
        elif cls == 0x05:
            taken = {0x10: a == src, 0x20: a > src, 0x30: a >= src, 0x40: bool(a & src)}[op]
            pc += jt if taken else jf
        else:
            raise AssertionError(f"opcode {code:#x}")


def compared(insns) -> dict[int, set[int]]:
    """The constants each field of struct seccomp_data (by offset) is compared with: A holds
    the field last loaded (masked, maybe) wherever a comparison is."""
    held: dict[int, set] = {0: {None}}
    found: dict[int, set[int]] = {}
    for pc, (code, jt, jf, k) in enumerate(insns):
        holds = held.pop(pc, set())
        if code == 0x20:
            holds = {k}
        if code & 0x07 == 0x05 and code != 0x05:
            for field in holds:
                found.setdefault(field, set()).add(k)
        nexts = [] if code in (0x06, 0x16) else [pc + 1 + k] if code == 0x05 else \
            [pc + 1 + jt, pc + 1 + jf] if code & 0x07 == 0x05 else [pc + 1]
        for target in nexts:
            held.setdefault(target, set()).update(holds)
    return found


def around(values):
    return sorted({(v + d) & _MASK for v in values for d in (-1, 0, 1)} | {0, _MASK})


def assert_same_answers(original: bytes, rewritten: bytes) -> int:
    """Every call and argument value that can tell the programs apart gets the same answer
    from both; returns how many were compared."""
    old, new = unpack(original), unpack(rewritten)
    constants: dict[int, set[int]] = {}
    for program in (old, new):
        for field, values in compared(program).items():
            constants.setdefault(field, set()).update(values)
    count = 0
    for arch in around(constants.get(4, ())):
        for nr in around(constants.get(0, ())):
            answer = run(old, nr, arch)
            assert run(new, nr, arch)[0] == answer[0], (hex(arch), nr)
            count += 1
            if not answer[1]:
                continue
            for field, values in constants.items():     # each word of each argument
                if field < 16:
                    continue
                index, high = (field - 16) // 8, (field - 16) % 8 == 4
                for value in around(values):
                    args = [0] * 6
                    args[index] = value << 32 if high else value
                    assert run(new, nr, arch, args)[0] == run(old, nr, arch, args)[0], (hex(arch), nr, args)
                    count += 1
    return count


def profile(**changes) -> bytes:
    with open(DEFAULT_PROFILE) as f:
        data = json.load(f)
    data.update(changes)
    return json.dumps(data).encode()


@pytest.mark.parametrize("caps", [DEFAULT, ALL], ids=["default caps", "all caps"])
def test_the_default_profile_answers_the_same_in_under_a_quarter_of_the_length(caps):
    original = libseccomp_program(profile(), caps, "default")
    rewritten = compile_profile(profile(), caps, "default")
    assert len(rewritten) * 4 < len(original)
    assert assert_same_answers(original, rewritten) > 5000


def test_a_profile_with_argument_rules_of_every_kind_answers_the_same():
    ops = ["SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT"]
    rules = [{"names": ["read", "write", "close", "exit_group", "openat", "mmap"], "action": "SCMP_ACT_ALLOW"},
             {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
             {"names": ["ptrace"], "action": "SCMP_ACT_TRAP"},
             {"names": ["ioctl"], "action": "SCMP_ACT_ALLOW",
              "args": [{"index": 1, "value": 0x5401, "op": "SCMP_CMP_EQ"}]},
             {"names": ["fcntl"], "action": "SCMP_ACT_ALLOW",
              "args": [{"index": 1, "value": 0xff, "valueTwo": 4, "op": "SCMP_CMP_MASKED_EQ"}]},
             *({"names": [name], "action": "SCMP_ACT_ALLOW", "args": [{"index": i, "value": 7 + i, "op": op}]}
               for i, (name, op) in enumerate(zip(["dup3", "pipe2", "lseek", "getuid", "setuid", "umask"], ops))),
             {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
              "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 2, "value": 0, "op": "SCMP_CMP_EQ"}]}]
    for default in ("SCMP_ACT_ERRNO", "SCMP_ACT_KILL_PROCESS"):
        raw = json.dumps({"defaultAction": default, "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
                          "syscalls": rules}).encode()
        original = libseccomp_program(raw, DEFAULT, "rules")
        rewritten = compile_profile(raw, DEFAULT, "rules")
        assert len(rewritten) <= len(original)
        assert assert_same_answers(original, rewritten) > 1000


def test_a_program_it_cannot_take_apart_is_kept_as_it_is():
    # Tests the call number by a bit (jset): not a lookup by intervals.
    program = pack([(0x20, 0, 0, 0), (0x45, 0, 1, 1), (0x06, 0, 0, 0x50001), (0x06, 0, 0, 0x7fff0000)])
    assert compact(program) == program
    # Returns A, the call number itself, from 1000 on: an answer that differs within an interval.
    allowed = [(0x15, 20 - nr, 0, nr) for nr in range(20)]
    program = pack([(0x20, 0, 0, 0), (0x35, 0, 1, 1000), (0x16, 0, 0, 0), *allowed,
                    (0x06, 0, 0, 0x50001), (0x06, 0, 0, 0x7fff0000)])
    assert compact(program) == program


def test_a_loaded_filter_answers_as_libseccomps(tmp_path):
    """The kernel takes the rewritten default program and answers from it: in a forked child,
    unshare(CLONE_NEWUSER) is refused with EPERM and getpid allowed."""
    import ctypes
    from corral.confine import _SockFprog
    program = compile_profile(profile(), DEFAULT, "default")
    fprog = _SockFprog(len(program) // 8, program)
    libc = ctypes.CDLL(None, use_errno=True)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            libc.prctl(38, 1, 0, 0, 0)
            loaded = libc.prctl(22, 2, ctypes.c_void_p(ctypes.addressof(fprog)), 0, 0)
            refused = libc.unshare(0x10000000)
            os.write(write_fd, f"{loaded} {refused} {ctypes.get_errno()} {os.getpid() > 0}".encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        answer = f.read()
    os.waitpid(pid, 0)
    assert answer == "0 -1 1 True"
