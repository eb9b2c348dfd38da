"""cgroups v1 (runc: libcontainer/cgroups/fs): a container's cgroup in one v1 hierarchy.

Each controller with operations of its own has a module here (cpu, memory, pids, devices,
freezer); any other v1 hierarchy (cpuacct, a named one) is a plain V1Cgroup.
"""

from __future__ import annotations

import os
import signal
import time

from ..base import Cgroup


class V1Cgroup(Cgroup):
    version = 1

    def join_files(self) -> list[str]:
        """v1's `tasks`: the one thread that writes "0" there moves itself, and a thread moving
        itself takes no global lock (kernel/cgroup: cgroup_procs_write_start), where a
        cgroup.procs write takes cgroup_threadgroup_rwsem, whose first writer after a quiet
        spell waits an RCU grace period (5-15 ms here). init is single-threaded: its one thread
        is all of it."""
        return [os.path.join(self.path, "tasks")]

    def kill(self) -> None:
        """SIGKILL every process, repeating until none is left (one may fork meanwhile; the
        freezer hierarchy does better, see fs/freezer.py)."""
        for _attempt in range(1000):
            pids = self.procs()
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if not pids:
                break
            time.sleep(0.001)

    def cgroupspy(self, name: str):
        """cgroupspy's controller object `name` (CpuController, ...) for this cgroup."""
        from cgroupspy import controllers
        return getattr(controllers, name)(_Node(self.path.encode()))


class _Node:
    """All that cgroupspy's controllers read of a tree node: its path. cgroupspy.nodes itself
    would import logging (9 ms of a cold launch) and walk trees corral has no use for."""
    __slots__ = ("full_path",)

    def __init__(self, full_path: bytes):
        self.full_path = full_path
