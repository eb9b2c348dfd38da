"""cgroup2 memory: memory.max, the OOM counted in memory.events (oom_kill), whose changes
the file reports to poll(2); usage from memory.current, peak from memory.peak (Linux 5.19+), memory.stat.

Policy, the same limits as v1's: memory.max is the hard limit. memory.high stays 'max' (set at
the limit it would throttle and reclaim a task that v1 OOM-kills, and a lower one has no v1
counterpart); memory.low is not set (v1's soft limit equals the hard one, so it never acts);
memory.swap.max is left as the host has it, as v1 leaves memory.memsw.limit_in_bytes (Mesos
without --cgroups_limit_swap).
"""

from __future__ import annotations

import os
import select

from ..base import MemoryUsage, Notice
from . import V2Cgroup


class Memory(V2Cgroup):
    # The notice says only that memory.events changed: the oom_kill count is what tells.
    OOM_NOTICE_IS_THE_OOM = False

    def set_limit(self, limit: int) -> None:
        """memory.max. v1 refuses a limit below current usage (EBUSY) and keeps the old one;
        cgroup2 would reclaim and OOM-kill to meet it: keep the old limit then, as v1 does."""
        if limit < int(self.read("memory.current")) and self.limit() is not None:
            return
        self.write("memory.max", str(limit))

    def limit(self) -> int | None:
        limit = self.read("memory.max").strip()
        return None if limit == "max" else int(limit)

    def peak(self) -> int:
        """memory.peak where the kernel has it (5.19+), else the current usage."""
        try:
            return int(self.read("memory.peak"))
        except FileNotFoundError:
            return int(self.read("memory.current"))

    def stats(self) -> dict[str, int]:
        return self.read_keyed("memory.stat")

    def usage(self) -> MemoryUsage:
        stat = self.read_keyed("memory.stat")
        return MemoryUsage(total=int(self.read("memory.current")), rss=stat.get("anon", 0),
                           cache=stat.get("file", 0), limit=self.limit())

    def oom_notice(self) -> Notice:
        """memory.events's changes, which kernfs reports to poll(2) on the file as POLLPRI, seen
        by an epoll fd that turns readable on them. (inotify would tell as much, but closing an
        inotify fd waits for an SRCU grace period: 8 ms here, at the end of every wait.)"""
        events = os.open(os.path.join(self.path, "memory.events"), os.O_RDONLY | os.O_CLOEXEC)
        try:
            ready = select.epoll()
            ready.register(events, select.EPOLLPRI)
        except BaseException:
            os.close(events)
            raise

        def take() -> bool:
            news = bool(ready.poll(0))
            try:
                os.pread(events, 4096, 0)   # a read through this open file quiets it until the next change
            except OSError:
                pass                        # the cgroup is gone
            return news

        def close() -> None:
            ready.close()
            os.close(events)
        return Notice(ready.fileno(), take, close)

    def oom_kills(self) -> int:
        return self.read_keyed("memory.events").get("oom_kill", 0)
