"""isolators/seccomp_bpf.compact(): the rewritten program answers every call as libseccomp's does.

Both programs run in seccomp_bpf's classic-BPF interpreter (the kernel's semantics for what
seccomp accepts) on every call number and architecture where some comparison of either program
changes its answer, and, where the answer depends on the arguments, on every argument at every
value that either program compares it with (and one each side): `same_answers`, which compact()
itself runs before it returns a rewrite. The kernel's own load and answers are the confinement
tests' (tests/test_confinement.py).
"""

from __future__ import annotations

import json
import os

import pytest

from corral.isolators.capabilities import ALL, DEFAULT
from corral.isolators.seccomp import DEFAULT_PROFILE, compile_profile, libseccomp_program
from corral.isolators import seccomp_bpf
from corral.isolators.seccomp_bpf import Unverified, compact, pack, same_answers, unpack
from tests.childkit import in_child


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
    assert same_answers(unpack(original), unpack(rewritten)) > 4000


def rules_profile(default: str) -> bytes:
    """A profile with a rule of every kind: actions, and argument conditions of every comparison."""
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
    return json.dumps({"defaultAction": default, "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
                       "syscalls": rules}).encode()


def test_a_profile_with_argument_rules_of_every_kind_answers_the_same():
    for default in ("SCMP_ACT_ERRNO", "SCMP_ACT_KILL_PROCESS"):
        raw = rules_profile(default)
        original = libseccomp_program(raw, DEFAULT, "rules")
        rewritten = compile_profile(raw, DEFAULT, "rules")
        assert len(rewritten) <= len(original)
        assert same_answers(unpack(original), unpack(rewritten)) > 1000


def an_action_changed(program):
    """The first "allow" the program returns made "EPERM"."""
    pc = next(pc for pc, insn in enumerate(program) if insn == (0x06, 0, 0, 0x7fff0000))
    return program[:pc] + [(0x06, 0, 0, 0x50001)] + program[pc + 1:]


def an_argument_check_inverted(program):
    """The first comparison of an argument that jumps two ways with its ways swapped."""
    pc = next(pc for pc, (code, jt, jf, k) in enumerate(program)
              if code in (0x15, 0x25, 0x35) and jt != jf and any(
                  insn[0] == 0x20 and insn[3] >= 16 for insn in program[pc - 3:pc]))
    code, jt, jf, k = program[pc]
    return program[:pc] + [(code, jf, jt, k)] + program[pc + 1:]


@pytest.mark.parametrize("mutation", [an_action_changed, an_argument_check_inverted])
def test_a_rewrite_that_answers_a_call_otherwise_is_refused(monkeypatch, caplog, mutation):
    """compact() checks its rewrite before it returns it: one that answers a call otherwise
    (here, compact's own emission broken on purpose) leaves libseccomp's program as it is, and
    says so in the log."""
    original = libseccomp_program(profile(), DEFAULT, "default")
    emit = seccomp_bpf._emit
    emitted = []

    def broken_emit(insns, by_arch):
        emitted.append(mutation(emit(insns, by_arch)))
        return emitted[-1]

    monkeypatch.setattr(seccomp_bpf, "_emit", broken_emit)
    assert compact(original) == original
    assert len(emitted[0]) < len(unpack(original))      # it would have been taken
    assert "libseccomp's program kept as it is: arch" in caplog.text
    with pytest.raises(Unverified, match="rewritten"):
        same_answers(unpack(original), emitted[0])


def test_a_rewrite_too_long_to_check_is_refused(monkeypatch):
    original = libseccomp_program(profile(), DEFAULT, "default")
    assert compact(original) != original
    monkeypatch.setattr(seccomp_bpf, "_MAX_CALLS", 1000)
    assert compact(original) == original


def test_a_call_number_tested_by_other_than_intervals_is_not_checked_by_intervals():
    # The same answers on the values where the first program's comparisons change theirs,
    # but not for 3 (a bit test): the check cannot take it.
    first = [(0x20, 0, 0, 0), (0x15, 0, 1, 1), (0x06, 0, 0, 0x50001), (0x06, 0, 0, 0x7fff0000)]
    second = [(0x20, 0, 0, 0), (0x45, 0, 1, 1), (0x06, 0, 0, 0x50001), (0x06, 0, 0, 0x7fff0000)]
    assert same_answers(first, first) > 0
    with pytest.raises(Unverified, match="other than intervals"):
        same_answers(first, second)
    # Returns the call number itself: an answer that differs within an interval.
    with pytest.raises(Unverified, match="ret A"):
        same_answers(first, [(0x20, 0, 0, 0), (0x16, 0, 0, 0)])


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

    def load_and_try():
        libc.prctl(38, 1, 0, 0, 0)
        loaded = libc.prctl(22, 2, ctypes.c_void_p(ctypes.addressof(fprog)), 0, 0)
        refused = libc.unshare(0x10000000)
        return f"{loaded} {refused} {ctypes.get_errno()} {os.getpid() > 0}"
    answer = in_child(load_and_try)
    assert answer == "0 -1 1 True"
