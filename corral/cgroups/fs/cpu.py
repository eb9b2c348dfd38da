"""v1 cpu: cpu.shares, the CFS quota (cpu.cfs_quota_us per cpu.cfs_period_us), cpu.stat's
throttling, and CPU time from cpuacct.stat, whose hierarchy this cgroup takes along."""

from __future__ import annotations

import os

from ..base import CpuTimes
from . import V1Cgroup

_TICKS = os.sysconf("SC_CLK_TCK")


class Cpu(V1Cgroup):

    def __init__(self, controller: str, path: str):
        super().__init__(controller, path)
        from .. import hierarchies
        v1 = hierarchies().v1
        # cpuacct keeps the CPU time; on hosts that mount it apart from cpu, its cgroup is created,
        # joined and removed along with this one.
        self.acct = None
        if "cpuacct" in v1:
            acct_path = os.path.join(v1["cpuacct"], os.path.relpath(path, v1[controller]))
            self.acct = V1Cgroup("cpuacct", acct_path)
        self._both = [self] if self.acct is None or self.acct.path == path else [self, self.acct]

    def create(self) -> None:
        for cgroup in self._both:
            V1Cgroup.create(cgroup)

    def attach(self, pid: int) -> None:
        for cgroup in self._both:
            V1Cgroup.attach(cgroup, pid)

    def remove(self, timeout: float = 5.0) -> None:
        for cgroup in self._both:
            V1Cgroup.remove(cgroup, timeout)

    def set(self, shares: int, quota_us: int | None = None, period_us: int | None = None) -> None:
        """cpu.shares, and with `quota_us` a CFS quota per `period_us`."""
        controller = self.cgroupspy("CpuController")
        controller.shares = shares
        if quota_us is not None:
            controller.cfs_period_us = period_us
            controller.cfs_quota_us = quota_us

    def shares(self) -> int:
        return int(self.read("cpu.shares"))

    def quota(self) -> tuple[int, int] | None:
        """(quota, period) in microseconds, or None without a CFS quota."""
        quota = int(self.read("cpu.cfs_quota_us"))
        return None if quota < 0 else (quota, int(self.read("cpu.cfs_period_us")))

    def times(self) -> CpuTimes:
        stat = self.read_keyed("cpu.stat")
        acct = self.acct.read_keyed("cpuacct.stat") if self.acct is not None else {}
        return CpuTimes(user=acct.get("user", 0) / _TICKS, system=acct.get("system", 0) / _TICKS,
                        nr_periods=stat.get("nr_periods", 0), nr_throttled=stat.get("nr_throttled", 0),
                        throttled=stat.get("throttled_time", 0) / 1e9)
