"""cgroup2 cpu: cpu.weight (from Mesos's cpu.shares), cpu.max (the CFS quota), cpu.stat.

The weight is the conversion runc, crun and Kubernetes use, a linear map of the shares range
[2, 262144] onto the weight range [1, 10000]:  weight = 1 + (shares - 2) * 9999 / 262142.
So 1 cpu (1024 shares) is weight 39, not cgroup2's default 100; what counts is the ratio between
containers, which the map keeps (to within the rounding of 10000 weights for 262142 shares).
"""

from __future__ import annotations

from ..base import CpuTimes
from . import V2Cgroup


def weight_for(shares: int) -> int:
    """cgroup2 cpu.weight for cpu.shares."""
    return 1 + ((shares - 2) * 9999) // 262142


def shares_for_weight(weight: int) -> int:
    """The inverse (lossy) map: the cpu.shares a cpu.weight stands for."""
    return 2 + ((weight - 1) * 262142) // 9999


class Cpu(V2Cgroup):

    def set(self, shares: int, quota_us: int | None = None, period_us: int | None = None) -> None:
        """cpu.weight from `shares`, and with `quota_us` cpu.max = '<quota> <period>'."""
        self.write("cpu.weight", str(weight_for(shares)))
        if quota_us is not None:
            self.write("cpu.max", f"{quota_us} {period_us}")

    def shares(self) -> int:
        return shares_for_weight(int(self.read("cpu.weight")))

    def quota(self) -> tuple[int, int] | None:
        """(quota, period) in microseconds, or None without a quota (cpu.max 'max <period>')."""
        quota, _, period = self.read("cpu.max").partition(" ")
        return None if quota == "max" else (int(quota), int(period))

    def times(self) -> CpuTimes:
        stat = self.read_keyed("cpu.stat")
        return CpuTimes(user=stat.get("user_usec", 0) / 1e6, system=stat.get("system_usec", 0) / 1e6,
                        nr_periods=stat.get("nr_periods", 0), nr_throttled=stat.get("nr_throttled", 0),
                        throttled=stat.get("throttled_usec", 0) / 1e6)
