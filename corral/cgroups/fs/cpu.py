"""v1 cpu: cpu.shares, the CFS quota (cpu.cfs_quota_us per cpu.cfs_period_us), cpu.stat's
throttling, and CPU time from cpuacct.stat, whose hierarchy this cgroup takes along."""

from __future__ import annotations

import os

from corral.cpu import CFS_PERIOD_US, CPU_SHARES_PER_CPU, quota_for, shares_for

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

    def join_files(self) -> list[str]:
        return [file for cgroup in self._both for file in V1Cgroup.join_files(cgroup)]

    def remove(self, timeout: float = 5.0) -> None:
        for cgroup in self._both:
            V1Cgroup.remove(cgroup, timeout)

    def set(self, cpus: float, cfs: bool = False) -> None:
        """cpu.shares for `cpus`, and with `cfs` a CFS quota of `cpus` per period."""
        controller = self.cgroupspy("CpuController")
        controller.shares = shares_for(cpus)
        if cfs:
            controller.cfs_period_us = CFS_PERIOD_US
            controller.cfs_quota_us = quota_for(cpus)

    def has_quota(self) -> bool:
        return int(self.read("cpu.cfs_quota_us")) >= 0

    def limit(self) -> float:
        """The cpus the cgroup may use: its CFS quota, else its share."""
        quota = int(self.read("cpu.cfs_quota_us"))
        if quota >= 0:
            return quota / int(self.read("cpu.cfs_period_us"))
        return int(self.read("cpu.shares")) / CPU_SHARES_PER_CPU

    def times(self) -> CpuTimes:
        stat = self.read_keyed("cpu.stat")
        acct = self.acct.read_keyed("cpuacct.stat") if self.acct is not None else {}
        return CpuTimes(user=acct.get("user", 0) / _TICKS, system=acct.get("system", 0) / _TICKS,
                        nr_periods=stat.get("nr_periods", 0), nr_throttled=stat.get("nr_throttled", 0),
                        throttled=stat.get("throttled_time", 0) / 1e9)
