"""cgroups/cpu: CPU shares (v2: weight) from cpus, and with --cgroups-enable-cfs a CFS quota.

The arithmetic is Mesos's (corral/cpu.py).
"""

from __future__ import annotations

import os

from corral.cpu import CFS_PERIOD_US, CPU_SHARES_PER_CPU, quota_for, shares_for
from corral.types import Resources

from .. import Isolator
from . import cgroup_for, hierarchies

_TICKS = os.sysconf("SC_CLK_TCK")


def weight_for(shares: int) -> int:
    """cgroup2 cpu.weight equivalent of cpu.shares (the conversion runc and crun use)."""
    return 1 + ((shares - 2) * 9999) // 262142


class CpuIsolator(Isolator):

    def _cgroups(self, container_id: str):
        path = f"{self.flags.cgroups_root}/{container_id}"
        cpu = cgroup_for("cpu", path)
        # v1 accounts CPU time in cpuacct (its own hierarchy on some hosts).
        acct = cgroup_for("cpuacct", path) if cpu.version == 1 and "cpuacct" in hierarchies().v1 else None
        return cpu, acct

    def prepare(self, container_id, config):
        cpu, acct = self._cgroups(container_id)
        cpu.create()
        if acct is not None:
            acct.create()
        self._apply(cpu, config.resources, config.cgroups_enable_cfs or self.flags.cgroups_enable_cfs)

    def isolate(self, container_id, pid):
        for cgroup in self._cgroups(container_id):
            if cgroup is not None:
                cgroup.attach(pid)

    def update(self, container_id, resources: Resources):
        cpu, _ = self._cgroups(container_id)
        self._apply(cpu, resources, self._has_quota(cpu) or self.flags.cgroups_enable_cfs)

    def _apply(self, cpu, resources: Resources, cfs: bool) -> None:
        if resources.cpus is None:
            return
        shares = shares_for(resources.cpus)
        if cpu.version == 1:
            controller = cpu.controller
            controller.shares = shares
            if cfs:
                controller.cfs_period_us = CFS_PERIOD_US
                controller.cfs_quota_us = quota_for(resources.cpus)
        else:
            cpu.write("cpu.weight", str(weight_for(shares)))
            if cfs:
                cpu.write("cpu.max", f"{quota_for(resources.cpus)} {CFS_PERIOD_US}")

    @staticmethod
    def _has_quota(cpu) -> bool:
        if cpu.version == 1:
            return cpu.controller.cfs_quota_us is not None     # cgroupspy reads -1 (no quota) as None
        return not cpu.read("cpu.max").startswith("max")

    def usage(self, container_id):
        cpu, acct = self._cgroups(container_id)
        if not cpu.exists():
            return {}
        stat = cpu.read_keyed("cpu.stat")
        if cpu.version == 1:
            controller = cpu.controller
            quota, period = controller.cfs_quota_us, controller.cfs_period_us
            limit = quota / period if quota is not None else controller.shares / CPU_SHARES_PER_CPU
            times = acct.read_keyed("cpuacct.stat") if acct is not None else {}
            return {
                "cpus_user_time_secs": times.get("user", 0) / _TICKS,
                "cpus_system_time_secs": times.get("system", 0) / _TICKS,
                "cpus_limit": limit,
                "cpus_nr_periods": stat.get("nr_periods", 0),
                "cpus_nr_throttled": stat.get("nr_throttled", 0),
                "cpus_throttled_time_secs": stat.get("throttled_time", 0) / 1e9,
            }
        quota, _, period = cpu.read("cpu.max").partition(" ")
        weight = int(cpu.read("cpu.weight"))
        limit = int(quota) / int(period) if quota != "max" else weight_to_shares(weight) / CPU_SHARES_PER_CPU
        return {
            "cpus_user_time_secs": stat.get("user_usec", 0) / 1e6,
            "cpus_system_time_secs": stat.get("system_usec", 0) / 1e6,
            "cpus_limit": limit,
            "cpus_nr_periods": stat.get("nr_periods", 0),
            "cpus_nr_throttled": stat.get("nr_throttled", 0),
            "cpus_throttled_time_secs": stat.get("throttled_usec", 0) / 1e6,
        }

    def cleanup(self, container_id):
        for cgroup in self._cgroups(container_id):
            if cgroup is not None:
                cgroup.remove()


def weight_to_shares(weight: int) -> int:
    return 2 + ((weight - 1) * 262142) // 9999
