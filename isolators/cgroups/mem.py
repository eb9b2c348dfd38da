"""cgroups/mem: a hard memory limit, and the kernel's OOM kill reported as a limitation.

v1: memory.limit_in_bytes (and the soft limit, as Mesos), the OOM event through an eventfd
registered on memory.oom_control; v2: memory.max, and memory.events's oom_kill counter, whose
changes inotify reports. Either way the counter answers after the fact too.
"""

from __future__ import annotations

import os

from corral import linux
from corral.types import REASON_CONTAINER_LIMITATION_MEMORY, Limitation, Resources

from .. import Isolator, Watch
from . import cgroup_for

MB = 1024 * 1024
MIN_MEMORY = 32 * MB        # Mesos's floor: below this a task can hardly start


def limit_bytes(mem_mb: float) -> int:
    return max(int(mem_mb * MB), MIN_MEMORY)


class MemIsolator(Isolator):

    def _cgroup(self, container_id: str):
        return cgroup_for("memory", f"{self.flags.cgroups_root}/{container_id}")

    def prepare(self, container_id, config):
        cgroup = self._cgroup(container_id)
        cgroup.create()
        self._apply(cgroup, config.resources)

    def isolate(self, container_id, pid):
        self._cgroup(container_id).attach(pid)

    def update(self, container_id, resources: Resources):
        self._apply(self._cgroup(container_id), resources)

    @staticmethod
    def _apply(cgroup, resources: Resources) -> None:
        if resources.mem_mb is None:
            return
        limit = limit_bytes(resources.mem_mb)
        if cgroup.version == 1:
            controller = cgroup.controller
            controller.soft_limit_in_bytes = limit
            try:
                controller.limit_in_bytes = limit
            except OSError:
                # Lowering below current usage fails (EBUSY); Mesos leaves the old limit then too.
                pass
        else:
            cgroup.write("memory.max", str(limit))

    def watch(self, container_id):
        cgroup = self._cgroup(container_id)
        if cgroup.version == 1:
            event = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            control = os.open(os.path.join(cgroup.path, "memory.oom_control"), os.O_RDONLY | os.O_CLOEXEC)
            try:
                cgroup.write("cgroup.event_control", f"{event} {control}")
            finally:
                os.close(control)
            fd = event
        else:
            fd = linux.inotify_file(os.path.join(cgroup.path, "memory.events"))

        def check():
            # v1's event is the OOM itself, and may come before the kill is counted; v2's inotify
            # only says memory.events changed, and the oom_kill count is what tells.
            fired = linux.drain(fd)
            return self.limitation(container_id, oom_event=fired and cgroup.version == 1)
        return Watch(check=check, fd=fd, close=lambda: os.close(fd))

    def limitation(self, container_id, oom_event: bool = False):
        cgroup = self._cgroup(container_id)
        try:
            if cgroup.version == 1:
                oom_kills = cgroup.read_keyed("memory.oom_control").get("oom_kill", 0)
            else:
                oom_kills = cgroup.read_keyed("memory.events").get("oom_kill", 0)
        except FileNotFoundError:
            return None        # the cgroup is gone (an rmdir also signals the v1 eventfd)
        if not (oom_kills or oom_event):
            return None
        return Limitation(REASON_CONTAINER_LIMITATION_MEMORY, self._oom_message(cgroup))

    @staticmethod
    def _oom_message(cgroup) -> str:
        if cgroup.version == 1:
            limit = int(cgroup.read("memory.limit_in_bytes"))
            peak = int(cgroup.read("memory.max_usage_in_bytes"))
            stats = {k[len("total_"):]: v for k, v in cgroup.read_keyed("memory.stat").items()
                     if k.startswith("total_")}
        else:
            limit = int(cgroup.read("memory.max"))
            peak_file = "memory.peak" if os.path.exists(os.path.join(cgroup.path, "memory.peak")) else "memory.current"
            peak = int(cgroup.read(peak_file))
            stats = cgroup.read_keyed("memory.stat")
        listed = ", ".join(f"{k} {v}" for k, v in stats.items() if v)
        return (f"Memory limit exceeded: Requested: {limit // MB}MB Maximum Used: {peak // MB}MB; "
                f"MEMORY STATISTICS: {listed}")

    def usage(self, container_id):
        cgroup = self._cgroup(container_id)
        if not cgroup.exists():
            return {}
        stat = cgroup.read_keyed("memory.stat")
        if cgroup.version == 1:
            return {
                "mem_total_bytes": int(cgroup.read("memory.usage_in_bytes")),
                "mem_rss_bytes": stat.get("total_rss", 0),
                "mem_cache_bytes": stat.get("total_cache", 0),
                "mem_limit_bytes": int(cgroup.read("memory.limit_in_bytes")),
            }
        limit = cgroup.read("memory.max").strip()
        return {
            "mem_total_bytes": int(cgroup.read("memory.current")),
            "mem_rss_bytes": stat.get("anon", 0),
            "mem_cache_bytes": stat.get("file", 0),
            "mem_limit_bytes": None if limit == "max" else int(limit),
        }

    def cleanup(self, container_id):
        self._cgroup(container_id).remove()
