"""v1 pids: pids.max and pids.current (the same files as cgroup2's)."""

from __future__ import annotations

from . import V1Cgroup


class PidsFiles:
    """pids.max and pids.current, which both versions name and write alike."""

    def set_max(self, limit: int | None) -> None:
        """At most `limit` tasks (threads count) in the subtree; None: no limit."""
        self.write("pids.max", "max" if limit is None else str(limit))

    def max(self) -> int | None:
        value = self.read("pids.max").strip()
        return None if value == "max" else int(value)

    def current(self) -> int:
        return int(self.read("pids.current"))


class Pids(PidsFiles, V1Cgroup):
    pass
