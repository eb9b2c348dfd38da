"""A seccomp program rewritten smaller, with the same answer to every system call.

libseccomp compiles a profile to a classic BPF program that, for each architecture, looks the
call number up in a binary tree with one comparison per number it has a rule for: Docker's
profile on x86_64 (with its x86 and x32 sections) is ~1250 instructions. The kernel's load of a
filter costs in proportion to its length (it converts the program to eBPF and JIT-compiles it,
several passes over each instruction): ~0.45 ms in every container's init. Most neighbouring
numbers get the same answer, so `compact()` looks the numbers up by ranges instead.

How: it runs libseccomp's program on each distinct (architecture, number) pair (the program
compares them with a few hundred constants, which cut the values into intervals where every
comparison, so every answer, is the same), up to the point where the program reads anything
else (a call's arguments). Then it writes a program that finds the interval in a binary tree of
merged intervals (a lone number or two inside a range as a comparison each, every distinct
answer written once) and returns the same action, or, for calls whose answer depends on their
arguments, jumps to a copy of the very instructions libseccomp wrote for those arguments. The
argument checks are libseccomp's, unchanged; the rest answers as libseccomp's program by
construction. Docker's profile becomes ~245 instructions, loaded in a third of the time. A
program of any other form (one that tests the number by bits, or returns it) is returned as
it is.

The rewrite is checked before it is used (`same_answers`): a profile can be any user's
(`--seccomp-profile`, the agent's --seccomp_config_dir), and the construction above is argued
for the forms libseccomp writes, not proved for every program; a filter that answered one call
otherwise than its profile says would be a hole (or a broken container). Both programs run in
a classic-BPF interpreter on a value of each interval of call numbers and architectures where
every comparison of either program gives the same answer, and, where the answer depends on
the arguments, on each argument word at each value either program compares it with (and one
each side): ~4200 calls, ~20 ms for Docker's profile, once per profile (seccomp.py caches the
program). Any difference, or more calls to run than `_MAX_CALLS`, and libseccomp's program is
used as it is.
"""

from __future__ import annotations

import struct

_LD_ABS = 0x20                              # BPF_LD | BPF_W | BPF_ABS: A = seccomp_data[k]
_JA, _JEQ, _JGT, _JGE, _JSET = 0x05, 0x15, 0x25, 0x35, 0x45     # BPF_JMP | op | BPF_K
_RET, _RET_A = 0x06, 0x16
_NR, _ARCH = 0, 4                           # offsetof(struct seccomp_data, nr), (..., arch)
_TOP = 1 << 32
_MAX_JUMP = 255                             # a conditional jump's offsets are 8 bits
_MAX_EXCEPTIONS = 32                        # per segment (see _segments): its jumps stay short
_MAX_CALLS = 100_000                        # calls same_answers may run both programs on (~0.5 s)
_MASK = 0xffffffff


def unpack(program: bytes) -> list[tuple[int, int, int, int]]:
    """struct sock_filter[] as (code, jt, jf, k) tuples."""
    return [struct.unpack_from("<HBBI", program, offset) for offset in range(0, len(program), 8)]


def pack(insns) -> bytes:
    return b"".join(struct.pack("<HBBI", *insn) for insn in insns)


class _Unsupported(Exception):
    pass


def compact(program: bytes) -> bytes:
    """`program` (libseccomp's) as a shorter program with the same answers; `program` itself
    if it has a form this does not rewrite, if the rewrite is no shorter, or if it does not
    answer every call as `program` does (see the module's docstring)."""
    insns = unpack(program)
    try:
        cuts = _cuts(insns)
        new = _emit(insns, _outcomes(insns, cuts))
        if len(new) >= len(insns):
            return program
        same_answers(insns, new, _MAX_CALLS)
    except _Unsupported:
        return program
    except Unverified as e:     # a rewrite not shown equal: worth knowing of, never worth using
        import logging          # here only: not on a launch's path
        logging.getLogger("corral.seccomp").warning("seccomp: libseccomp's program kept as it is: %s", e)
        return program
    return pack(new)


def _cuts(insns) -> dict[int, list[int]]:
    """For the call number and the architecture, the values where some comparison of the
    program's first part (up to a load of anything else) changes its answer."""
    held: dict[int, set] = {0: {None}}            # pc -> what A may hold there
    found = {_NR: {0}, _ARCH: {0}}
    for pc, (code, jt, jf, k) in enumerate(insns):
        if pc not in held:
            continue
        holds = held.pop(pc)
        if code == _LD_ABS:
            if k not in (_NR, _ARCH):
                continue                          # the arguments' part: left as it is
            nexts, holds = [pc + 1], {k}
        elif code == _RET:
            continue
        elif code == _JA:
            nexts = [pc + 1 + k]
        elif code in (_JEQ, _JGT, _JGE):
            if len(holds) != 1 or None in holds:
                raise _Unsupported()
            field = next(iter(holds))
            found[field] |= {k, k + 1} if code == _JEQ else {k + 1} if code == _JGT else {k}
            nexts = [pc + 1 + jt, pc + 1 + jf]
        else:
            raise _Unsupported()                  # bit tests, arithmetic, ret A: not by intervals
        for target in nexts:
            if target >= len(insns):
                raise _Unsupported()
            held.setdefault(target, set()).update(holds)
    return {field: sorted(value for value in values if value < _TOP) for field, values in found.items()}


def _answer(insns, arch: int, nr: int) -> tuple[str, int]:
    """What the program does with a call of `arch` and number `nr`, as far as those decide it:
    ("ret", action), or ("args", pc) where it goes on to read the arguments."""
    a, pc = 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        if code == _LD_ABS:
            if k not in (_NR, _ARCH):
                return "args", pc
            a = nr if k == _NR else arch
            pc += 1
        elif code == _RET:
            return "ret", k
        elif code == _JA:
            pc += 1 + k
        else:
            taken = a == k if code == _JEQ else a > k if code == _JGT else a >= k
            pc += 1 + (jt if taken else jf)


def _merged(pairs):
    """[(first value, outcome)] with each run of one outcome kept as its first value only."""
    runs = []
    for value, outcome in pairs:
        if not runs or runs[-1][1] != outcome:
            runs.append((value, outcome))
    return runs


def _outcomes(insns, cuts):
    """[(first architecture value, [(first call number, outcome)] or an outcome for them all)]."""
    by_arch = []
    for arch in cuts[_ARCH]:
        runs = _merged((nr, _answer(insns, arch, nr)) for nr in cuts[_NR])
        by_arch.append((arch, runs[0][1] if len(runs) == 1 else tuple(runs)))
    return _merged(by_arch)


def _segments(runs):
    """`runs` ([(first value, leaf)]) as segments (first value, leaf, exceptions): a run of one
    or two values between two runs of the same leaf becomes exceptions [(value, leaf)] of one
    segment with that leaf, checked one by one (a comparison each, where a tree needs two)."""
    segments, i = [], 0
    while i < len(runs):
        first, leaf = runs[i]
        exceptions = []
        i += 1
        while (i + 1 < len(runs) and runs[i + 1][0] - runs[i][0] <= 2 and runs[i + 1][1] == leaf
               and len(exceptions) < _MAX_EXCEPTIONS):
            exceptions += [(value, runs[i][1]) for value in range(runs[i][0], runs[i + 1][0])]
            i += 2
        segments.append((first, leaf, exceptions))
    return segments


def _leaf(leaf) -> tuple:
    """("ret", action) or ("goto", label) as an instruction; a "goto" is a `ja` whose k is the
    label, resolved by _emit."""
    kind, value = leaf
    return (_RET, 0, 0, value) if kind == "ret" else (_JA, 0, 0, value)


def _lookup(segments) -> list:
    """A binary search over `segments` for the value A holds, ending in their leaves."""
    if len(segments) == 1:
        _first, leaf, exceptions = segments[0]
        targets = list(dict.fromkeys(leaf for _value, leaf in exceptions))
        checks = [(_JEQ, len(exceptions) - i + targets.index(leaf), 0, value)
                  for i, (value, leaf) in enumerate(exceptions)]
        return [*checks, _leaf(leaf), *map(_leaf, targets)]
    middle = len(segments) // 2
    left, right = _lookup(segments[:middle]), _lookup(segments[middle:])
    cut = segments[middle][0]
    if len(left) <= _MAX_JUMP:
        return [(_JGE, len(left), 0, cut), *left, *right]
    return [(_JGE, 0, 1, cut), (_JA, 0, 0, len(left)), *left, *right]


def _shared_lookup(segments) -> list | None:
    """_lookup's search with each distinct leaf written once, after it, and every comparison
    jumping there directly (a quarter fewer instructions); None where a jump would be too long."""
    leaves = list(dict.fromkeys([leaf for _first, leaf, exceptions in segments]
                                + [leaf for _first, _leaf, exceptions in segments for _value, leaf in exceptions]))
    code: list = []         # [op, jt, jf, k], a target as ("at", pc) or ("leaf", index)

    def search(part):
        """Writes the search of `part`; returns where it starts (a leaf: nothing was written)."""
        if len(part) == 1:
            _first, leaf, exceptions = part[0]
            start = len(code)
            for i, (value, found) in enumerate(exceptions):
                otherwise = ("leaf", leaves.index(leaf)) if i == len(exceptions) - 1 else ("at", len(code) + 1)
                code.append([_JEQ, ("leaf", leaves.index(found)), otherwise, value])
            return ("at", start) if exceptions else ("leaf", leaves.index(leaf))
        middle = len(part) // 2
        node = len(code)
        code.append(None)
        below = search(part[:middle])
        code[node] = [_JGE, search(part[middle:]), below, part[middle][0]]
        return "at", node

    if search(segments)[0] == "leaf":
        return None
    program = []
    for pc, (op, jt, jf, k) in enumerate(code):
        jt, jf = ((target[1] if target[0] == "at" else len(code) + target[1]) - (pc + 1) for target in (jt, jf))
        if not (0 <= jt <= _MAX_JUMP and 0 <= jf <= _MAX_JUMP):
            return None
        program.append((op, jt, jf, k))
    return program + [_leaf(leaf) for leaf in leaves]


def _emit(insns, by_arch) -> list:
    sections, entries = {}, set()

    def leaf(outcome):
        if isinstance(outcome, tuple) and outcome and isinstance(outcome[0], tuple):     # numbers to look up
            label = ("section", len(sections))
            sections[label] = outcome
            return "goto", label
        kind, value = outcome
        if kind == "ret":
            return outcome
        entries.add(value)
        return "goto", ("args", value)

    def search(runs):
        segments = _segments(runs)
        return _shared_lookup(segments) or _lookup(segments)

    program = [(_LD_ABS, 0, 0, _ARCH), *search([(arch, leaf(outcome)) for arch, outcome in by_arch])]
    labels = {}
    for label, runs in list(sections.items()):
        labels[label] = len(program)
        program += [(_LD_ABS, 0, 0, _NR), *search([(nr, leaf(outcome)) for nr, outcome in runs])]
    # The argument checks, copied with all they reach, in their order: every jump stays as
    # short as it was, or shorter.
    reached, todo = set(), sorted(entries)
    while todo:
        pc = todo.pop()
        if pc in reached:
            continue
        reached.add(pc)
        code, jt, jf, k = insns[pc]
        if code in (_RET, _RET_A):
            continue
        if code == _JA:
            todo.append(pc + 1 + k)
        elif code & 0x07 == 0x05:                 # BPF_JMP, conditional
            todo += [pc + 1 + jt, pc + 1 + jf]
        else:
            todo.append(pc + 1)
    copied = sorted(reached)
    start = len(program)
    where = {pc: start + i for i, pc in enumerate(copied)}
    for pc in copied:
        code, jt, jf, k = insns[pc]
        here = where[pc] + 1
        if code == _JA:
            k = where[pc + 1 + k] - here
        elif code & 0x07 == 0x05:
            jt, jf = where[pc + 1 + jt] - here, where[pc + 1 + jf] - here
        program.append((code, jt, jf, k))
    for pc in entries:
        labels["args", pc] = where[pc]
    # Resolve the leaves' gotos.
    for pc, (code, jt, jf, k) in enumerate(program[:start]):
        if code == _JA and isinstance(k, tuple):
            program[pc] = (_JA, 0, 0, labels[k] - (pc + 1))
    return program


# The check: both programs on every call that can tell them apart.

class Unverified(Exception):
    """Two programs answer a call differently (the message says which), or telling whether
    they do would take more than the budget of runs."""


_ALU = {0x00: lambda a, b: a + b, 0x10: lambda a, b: a - b, 0x20: lambda a, b: a * b,
        0x30: lambda a, b: a // b if b else 0, 0x40: lambda a, b: a | b, 0x50: lambda a, b: a & b,
        0x60: lambda a, b: a << (b & 31), 0x70: lambda a, b: a >> (b & 31), 0x80: lambda a, b: -a,
        0x90: lambda a, b: a % b if b else 0, 0xa0: lambda a, b: a ^ b}


def run(insns, words) -> tuple[int, bool]:
    """(the action, whether it read more than the call number and architecture) of a program,
    with the kernel's semantics for what seccomp accepts, on one call: `words`, struct
    seccomp_data as 16 32-bit words (nr, arch, instruction pointer, args). Unverified for what
    seccomp would not take (an unknown instruction, a jump out of the program, a load out of
    seccomp_data)."""
    a = x = pc = 0
    memory = [0] * 16
    read_more = False
    try:
        while True:
            code, jt, jf, k = insns[pc]
            pc += 1
            if code == _LD_ABS:
                if k % 4:
                    raise Unverified(f"ld [{k}]: not a word of seccomp_data")
                a = words[k // 4]
                read_more |= k >= 8
            elif code in (_JEQ, _JGT, _JGE, _JSET, 0x1d, 0x2d, 0x3d, 0x4d):    # against k, or x
                src = x if code & 0x08 else k
                op = code & 0xf0
                taken = a == src if op == 0x10 else a > src if op == 0x20 else a >= src if op == 0x30 else a & src
                pc += jt if taken else jf
            elif code == _JA:
                pc += k
            elif code in (_RET, _RET_A):
                return (k if code == _RET else a), read_more
            elif code & 0x07 == 0x04:                           # BPF_ALU
                a = _ALU[code & 0xf0](a, x if code & 0x08 else k) & _MASK
            elif code == 0x00:                                  # ld #k
                a = k
            elif code == 0x01:                                  # ldx #k
                x = k
            elif code in (0x60, 0x61):                          # ld / ldx M[k]
                a, x = (memory[k], x) if code == 0x60 else (a, memory[k])
            elif code in (0x02, 0x03):                          # st / stx M[k]
                memory[k] = a if code == 0x02 else x
            elif code == 0x07:                                  # tax
                x = a
            elif code == 0x87:                                  # txa
                a = x
            else:
                raise Unverified(f"opcode {code:#x}")
    except (IndexError, KeyError, TypeError) as e:
        raise Unverified(f"instruction {pc - 1}: {e!r}") from None


def compared(insns) -> dict[int, set[int]]:
    """The values of each word of seccomp_data (by offset) that can change a program's answer:
    for the call number and the architecture, the first value of each interval where every
    comparison gives the same answer (they must be compared unchanged, by ==, > or >=: other
    tests are not by intervals); for the rest, each constant a word (masked, maybe) is compared
    with, and one each side. Unverified for a comparison of anything else, or a return of A."""
    held: dict[int, set] = {0: {(None, False)}}   # pc -> what A may hold there: (offset, unchanged)
    found: dict[int, set[int]] = {_NR: {0}, _ARCH: {0}}
    for pc, (code, jt, jf, k) in enumerate(insns):
        if pc not in held:
            continue                              # not reached
        holds = held.pop(pc)
        if code == _LD_ABS:
            holds = {(k, True)}
        elif code & 0x07 == 0x04:                 # BPF_ALU: the word, changed
            holds = {(offset, False) for offset, _unchanged in holds}
        elif code & 0x07 == 0x00 or code == 0x87:     # A from elsewhere: a constant, memory, X
            holds = {(None, False)}
        if code == _RET_A:
            raise Unverified(f"instruction {pc}: ret A, an answer that may differ within an interval")
        if code & 0x07 == 0x05 and code != _JA:
            for offset, unchanged in holds:
                if offset is None or code & 0x08:
                    raise Unverified(f"instruction {pc}: compares other than a word of seccomp_data")
                if offset not in (_NR, _ARCH):
                    found.setdefault(offset, set()).update((k + d) & _MASK for d in (-1, 0, 1))
                elif unchanged and code in (_JEQ, _JGT, _JGE):
                    found[offset] |= {k, k + 1} if code == _JEQ else {k + 1} if code == _JGT else {k}
                else:
                    raise Unverified(f"instruction {pc}: call number or architecture tested by other than intervals")
        nexts = [] if code in (_RET, _RET_A) else [pc + 1 + k] if code == _JA else \
            [pc + 1 + jt, pc + 1 + jf] if code & 0x07 == 0x05 else [pc + 1]
        for target in nexts:
            held.setdefault(target, set()).update(holds)
    return {offset: {value for value in values if value < _TOP} for offset, values in found.items()}


def same_answers(old, new, budget: int = _MAX_CALLS) -> int:
    """How many calls both programs ((code, jt, jf, k) lists) were run on, all with the same
    answers: every call number and architecture that can tell them apart (see `compared`), and
    where either reads further, each further word of seccomp_data at every value either
    compares it with (the others 0). Unverified at the first call they answer differently, or
    where that would take more than `budget` runs."""
    values: dict[int, set[int]] = {}
    for program in (old, new):
        for offset, found in compared(program).items():
            values.setdefault(offset, set()).update(found)
    further = [(offset // 4, value) for offset in sorted(values) if offset >= 8
               for value in sorted(values[offset] | {0, _MASK})]
    count = len(values[_ARCH]) * len(values[_NR])
    if count > budget:
        raise Unverified(f"{count} calls to compare")
    for arch in sorted(values[_ARCH]):
        for nr in sorted(values[_NR]):
            words = [nr, arch] + [0] * 14
            (answer, read_more), (other, other_read_more) = run(old, words), run(new, words)
            if answer != other:
                raise Unverified(f"arch {arch:#x}, call {nr}: {answer:#x}, rewritten {other:#x}")
            if not (read_more or other_read_more):
                continue
            count += len(further)
            if count > budget:
                raise Unverified(f"over {budget} calls to compare")
            for index, value in further:
                words = [nr, arch] + [0] * 14
                words[index] = value
                answer, other = run(old, words)[0], run(new, words)[0]
                if answer != other:
                    raise Unverified(f"arch {arch:#x}, call {nr}, word {index} = {value:#x}: "
                                     f"{answer:#x}, rewritten {other:#x}")
    return count
