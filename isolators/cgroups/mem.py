"""cgroups/mem: a hard memory limit, and the kernel's OOM kill reported as a limitation.

The cgroup's memory controller (corral.cgroups: v1 or v2) sets the limit, gives a file
descriptor that turns readable on an OOM (v1: an eventfd on memory.oom_control; v2: an epoll fd
on memory.events's POLLPRI), and counts the OOM kills, so that the count answers after the fact too.
"""

from __future__ import annotations

from corral import cgroups
from corral.types import REASON_CONTAINER_LIMITATION_MEMORY, Limitation, Resources

from .. import Isolator, LaunchInfo, Watch

MB = 1024 * 1024
MIN_MEMORY = 32 * MB        # Mesos's floor: below this a task can hardly start


def limit_bytes(mem_mb: float) -> int:
    return max(int(mem_mb * MB), MIN_MEMORY)


class MemIsolator(Isolator):

    def __init__(self, flags):
        super().__init__(flags)
        # container -> its resources, from prepare() to forked(): the same launch, in this process
        self._pending: dict[str, Resources] = {}

    def _cgroup(self, container_id: str):
        return cgroups.container("memory", self.flags.cgroups_root, container_id)

    def prepare(self, container_id, config):
        cgroup = self._cgroup(container_id)
        cgroup.create()
        self._pending[container_id] = config.resources
        return LaunchInfo(cgroups=[cgroup])

    def forked(self, container_id):
        # Limited here, after the fork (see cgroups/cpu).
        resources = self._pending.pop(container_id, None)
        if resources is not None:
            self._apply(self._cgroup(container_id), resources)

    def update(self, container_id, resources: Resources):
        self._apply(self._cgroup(container_id), resources)

    @staticmethod
    def _apply(cgroup, resources: Resources) -> None:
        if resources.mem_mb is not None:
            cgroup.set_limit(limit_bytes(resources.mem_mb))

    def watch(self, container_id):
        cgroup = self._cgroup(container_id)
        notice = cgroup.oom_notice()

        def check():
            fired = notice.take()
            return self.limitation(container_id, oom_event=fired and cgroup.OOM_NOTICE_IS_THE_OOM)
        return Watch(check=check, fd=notice.fd, close=notice.close)

    def limitation(self, container_id, oom_event: bool = False):
        cgroup = self._cgroup(container_id)
        try:
            oom_kills = cgroup.oom_kills()
        except FileNotFoundError:
            return None        # the cgroup is gone (an rmdir also signals the v1 eventfd)
        if not (oom_kills or oom_event):
            return None
        return Limitation(REASON_CONTAINER_LIMITATION_MEMORY, self._oom_message(cgroup))

    @staticmethod
    def _oom_message(cgroup) -> str:
        limit = cgroup.limit()
        listed = ", ".join(f"{k} {v}" for k, v in cgroup.stats().items() if v)
        return (f"Memory limit exceeded: Requested: {'unlimited' if limit is None else f'{limit // MB}MB'} "
                f"Maximum Used: {cgroup.peak() // MB}MB; MEMORY STATISTICS: {listed}")

    def usage(self, container_id):
        cgroup = self._cgroup(container_id)
        if not cgroup.exists():
            return {}
        used = cgroup.usage()
        return {"mem_total_bytes": used.total, "mem_rss_bytes": used.rss,
                "mem_cache_bytes": used.cache, "mem_limit_bytes": used.limit}

    def cleanup(self, container_id):
        self._pending.pop(container_id, None)
        self._cgroup(container_id).remove()
