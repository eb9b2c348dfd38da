"""cgroup2 cpu: cpu.weight (100 per cpu, Mesos's cgroups2 mapping: corral/cpu.py), cpu.max
(the CFS quota, '<quota> <period>' or 'max <period>'), and cpu.stat's times and throttling."""

from __future__ import annotations

from corral.cpu import CFS_PERIOD_US, CPU_WEIGHT_PER_CPU, quota_for, weight_for

from ..base import CpuTimes
from . import V2Cgroup


class Cpu(V2Cgroup):

    def set(self, cpus: float, cfs: bool = False) -> None:
        """cpu.weight for `cpus`, and with `cfs` cpu.max = a quota of `cpus` per period."""
        self.write("cpu.weight", str(weight_for(cpus)))
        if cfs:
            self.write("cpu.max", f"{quota_for(cpus)} {CFS_PERIOD_US}")

    def has_quota(self) -> bool:
        return not self.read("cpu.max").startswith("max")

    def limit(self) -> float:
        """The cpus the cgroup may use: its quota, else its weight."""
        quota, _, period = self.read("cpu.max").partition(" ")
        if quota != "max":
            return int(quota) / int(period)
        return int(self.read("cpu.weight")) / CPU_WEIGHT_PER_CPU

    def times(self) -> CpuTimes:
        stat = self.read_keyed("cpu.stat")
        return CpuTimes(user=stat.get("user_usec", 0) / 1e6, system=stat.get("system_usec", 0) / 1e6,
                        nr_periods=stat.get("nr_periods", 0), nr_throttled=stat.get("nr_throttled", 0),
                        throttled=stat.get("throttled_usec", 0) / 1e6)
