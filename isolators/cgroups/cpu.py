"""cgroups/cpu: CPU shares (cgroup2: a weight) from cpus, and with --cgroups-enable-cfs a
CFS quota.

The arithmetic is Mesos's (corral/cpu.py); the files, v1 or v2, are corral.cgroups's.
"""

from __future__ import annotations

from corral import cgroups
from corral.types import Resources

from .. import Isolator, LaunchInfo


class CpuIsolator(Isolator):

    def __init__(self, flags):
        super().__init__(flags)
        # container -> (resources, cfs), from prepare() to forked(): the same launch, in this process
        self._pending: dict[str, tuple] = {}

    def _cgroup(self, container_id: str):
        return cgroups.container("cpu", self.flags.cgroups_root, container_id)

    def prepare(self, container_id, config):
        cpu = self._cgroup(container_id)
        cpu.create()
        self._pending[container_id] = (config.resources, config.cgroups_enable_cfs or self.flags.cgroups_enable_cfs)
        return LaunchInfo(cgroups=[cpu])

    def forked(self, container_id):
        # Limited here, after the fork, while the supervisor starts init (which joins the
        # cgroup itself; the task cannot start before the launch's forked() have returned).
        pending = self._pending.pop(container_id, None)
        if pending is not None:
            self._apply(self._cgroup(container_id), *pending)

    def update(self, container_id, resources: Resources):
        cpu = self._cgroup(container_id)
        self._apply(cpu, resources, cpu.has_quota() or self.flags.cgroups_enable_cfs)

    @staticmethod
    def _apply(cpu, resources: Resources, cfs: bool) -> None:
        if resources.cpus is not None:
            cpu.set(resources.cpus, cfs)

    def usage(self, container_id):
        cpu = self._cgroup(container_id)
        if not cpu.exists():
            return {}
        times = cpu.times()
        return {
            "cpus_user_time_secs": times.user,
            "cpus_system_time_secs": times.system,
            "cpus_limit": cpu.limit(),
            "cpus_nr_periods": times.nr_periods,
            "cpus_nr_throttled": times.nr_throttled,
            "cpus_throttled_time_secs": times.throttled,
        }

    def cleanup(self, container_id):
        self._pending.pop(container_id, None)
        self._cgroup(container_id).remove()
