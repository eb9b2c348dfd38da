"""Inclusive integer ranges, as Mesos writes them: [31000-32000,33000-33010].

The agent's ports resource, a container's ports and the network/ports isolator's checks all
speak this one type.
"""

from __future__ import annotations

import re

from .types import InvalidInput


class Ranges:
    """Inclusive integer ranges, sorted, with overlapping and adjacent ones coalesced."""

    __slots__ = ("spans",)

    def __init__(self, spans=()):
        merged: list[list[int]] = []
        for begin, end in sorted((int(b), int(e)) for b, e in spans):
            if begin > end:
                raise InvalidInput(f"range {begin}-{end} ends before it begins")
            if merged and begin <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([begin, end])
        self.spans: tuple[tuple[int, int], ...] = tuple((b, e) for b, e in merged)

    @classmethod
    def parse(cls, text: str) -> "Ranges":
        """'[1-4,3-5,7]' -> [1-5,7-7]."""
        inner = text.strip()
        if not (inner.startswith("[") and inner.endswith("]")):
            raise InvalidInput(f"ranges {text!r} must be written [BEGIN-END,...]")
        spans = []
        for item in filter(None, (i.strip() for i in inner[1:-1].split(","))):
            match = re.fullmatch(r"(\d+)\s*(?:-\s*(\d+))?", item)
            if not match:
                raise InvalidInput(f"{item!r} in {text!r} is not a range BEGIN-END of whole numbers")
            spans.append((int(match[1]), int(match[2] or match[1])))
        return cls(spans)

    def __or__(self, other: "Ranges") -> "Ranges":
        return Ranges(self.spans + other.spans)

    def __sub__(self, other: "Ranges") -> "Ranges":
        left = []
        for begin, end in self.spans:
            for cut_begin, cut_end in other.spans:
                if cut_end < begin or cut_begin > end:
                    continue
                if cut_begin > begin:
                    left.append((begin, cut_begin - 1))
                begin = cut_end + 1
                if begin > end:
                    break
            if begin <= end:
                left.append((begin, end))
        return Ranges(left)

    def __and__(self, other: "Ranges") -> "Ranges":
        return self - (self - other)

    def __le__(self, other: "Ranges") -> bool:
        return not (self - other)

    def __contains__(self, value: int) -> bool:
        return any(begin <= value <= end for begin, end in self.spans)

    def __len__(self) -> int:
        """How many values (ports) the ranges hold."""
        return sum(end - begin + 1 for begin, end in self.spans)

    def __bool__(self) -> bool:
        return bool(self.spans)

    def __iter__(self):
        for begin, end in self.spans:
            yield from range(begin, end + 1)

    def __eq__(self, other) -> bool:
        return isinstance(other, Ranges) and other.spans == self.spans

    def __hash__(self) -> int:
        return hash(self.spans)

    def to_list(self) -> list[list[int]]:
        """[[begin, end], ...]: the form configs and checkpoints hold (Ranges(that) reads it back)."""
        return [[b, e] for b, e in self.spans]

    def __str__(self) -> str:
        return "[" + ",".join(f"{b}-{e}" for b, e in self.spans) + "]"

    __repr__ = __str__
