"""v1 memory: memory.limit_in_bytes (and the soft limit), the OOM through an eventfd
registered on memory.oom_control, and its oom_kill counter; usage, peak and memory.stat."""

from __future__ import annotations

import os

from corral.files import drain

from ..base import MemoryUsage, Notice
from . import V1Cgroup


class Memory(V1Cgroup):
    # The eventfd fires on the OOM itself, possibly before the kill is counted.
    OOM_NOTICE_IS_THE_OOM = True

    def set_limit(self, limit: int) -> None:
        """Hard and soft limit, as Mesos's cgroups/mem. Lowering the hard limit below current
        usage fails (EBUSY): the old limit stays then, as in Mesos."""
        controller = self.cgroupspy("MemoryController")
        controller.soft_limit_in_bytes = limit
        try:
            controller.limit_in_bytes = limit
        except OSError:
            pass

    def limit(self) -> int | None:
        limit = int(self.read("memory.limit_in_bytes"))
        return None if limit >= 1 << 62 else limit      # v1's "unlimited" is a page-rounded LONG_MAX

    def peak(self) -> int:
        return int(self.read("memory.max_usage_in_bytes"))

    def stats(self) -> dict[str, int]:
        """memory.stat of the whole subtree (v1's total_* rows, named without the prefix)."""
        return {k[len("total_"):]: v for k, v in self.read_keyed("memory.stat").items() if k.startswith("total_")}

    def usage(self) -> MemoryUsage:
        stat = self.read_keyed("memory.stat")
        return MemoryUsage(total=int(self.read("memory.usage_in_bytes")), rss=stat.get("total_rss", 0),
                           cache=stat.get("total_cache", 0), limit=int(self.read("memory.limit_in_bytes")))

    def oom_notice(self) -> Notice:
        """An OOM in this cgroup: a non-blocking eventfd registered on memory.oom_control."""
        event = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        control = os.open(os.path.join(self.path, "memory.oom_control"), os.O_RDONLY | os.O_CLOEXEC)
        try:
            self.write("cgroup.event_control", f"{event} {control}")
        except BaseException:
            os.close(event)
            raise
        finally:
            os.close(control)
        return Notice(event, lambda: drain(event), lambda: os.close(event))

    def oom_kills(self) -> int:
        return self.read_keyed("memory.oom_control").get("oom_kill", 0)
