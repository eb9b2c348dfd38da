"""posix/rlimits: resource limits of the task (Mesos's RLimitInfo; Docker's --ulimit).

A container asks for [{"type": "RLMT_NOFILE", "soft": 1024, "hard": 4096}, ...]; init sets them
before it drops its capabilities (raising a hard limit needs CAP_SYS_RESOURCE). Without
soft and hard, a limit is unlimited, as Mesos's.
"""

from __future__ import annotations

import resource

from corral.types import InvalidInput

from . import Isolator, LaunchInfo

# Mesos's RLimitInfo.RLimit.Type names -> Linux's resource numbers (asm-generic/resource.h).
TYPES = {f"RLMT_{name}": number for number, name in enumerate((
    "CPU", "FSIZE", "DATA", "STACK", "CORE", "RSS", "NPROC", "NOFILE", "MEMLOCK", "AS", "LOCKS", "SIGPENDING",
    "MSGQUEUE", "NICE", "RTPRIO", "RTTIME"))}
UNLIMITED = resource.RLIM_INFINITY


def parse_rlimits(rlimits) -> list[tuple[int, int, int]]:
    """RLimitInfo's `rlimits` -> (resource, soft, hard); InvalidInput names what is wrong."""
    if not isinstance(rlimits, list):
        raise InvalidInput("rlimits must be a list of {\"type\": \"RLMT_...\", \"soft\": N, \"hard\": N}")
    parsed, seen = [], set()
    for limit in rlimits:
        kind = limit.get("type") if isinstance(limit, dict) else None
        if not isinstance(kind, str) or kind not in TYPES:
            raise InvalidInput(f"unknown rlimit type {kind!r} (known: {', '.join(sorted(TYPES))})")
        if kind in seen:
            raise InvalidInput(f"rlimit {kind} given twice")
        seen.add(kind)
        soft, hard = limit.get("soft"), limit.get("hard")
        if (soft is None) != (hard is None):
            raise InvalidInput(f"rlimit {kind}: give both soft and hard, or neither (unlimited)")
        if soft is None:
            soft = hard = UNLIMITED
        # setrlimit takes a signed 64-bit value (RLIM_INFINITY is -1 here).
        elif not all(type(v) is int and 0 <= v < 2**63 for v in (soft, hard)) or soft > hard:
            raise InvalidInput(f"rlimit {kind}: soft and hard must be numbers with soft <= hard")
        parsed.append((TYPES[kind], soft, hard))
    return parsed


def parse_ulimit(text: str) -> dict:
    """Docker's --ulimit: nofile=1024:4096 (or nofile=1024, the soft and hard alike)."""
    name, sep, values = text.partition("=")
    soft, _, hard = values.partition(":")
    hard = hard or soft
    numbers = soft.isascii() and soft.isdigit() and hard.isascii() and hard.isdigit()    # isdigit takes '²'
    if not sep or not numbers or f"RLMT_{name.upper()}" not in TYPES:
        raise InvalidInput(f"invalid ulimit {text!r}: use NAME=SOFT[:HARD], e.g. nofile=1024:4096")
    return {"type": f"RLMT_{name.upper()}", "soft": int(soft), "hard": int(hard)}


class RlimitsIsolator(Isolator):

    def prepare(self, container_id, config):
        if not config.rlimits:
            return None
        from corral.confine import Confinement
        return LaunchInfo(confinement=Confinement(rlimits=tuple(parse_rlimits(config.rlimits))))
