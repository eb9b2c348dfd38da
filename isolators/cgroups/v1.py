"""A container's cgroup in one cgroups v1 hierarchy (cpu, cpuacct, memory, freezer, ...)."""

from __future__ import annotations

import os
import signal
import time

from .base import Cgroup

_CGROUPSPY_CONTROLLERS = {"cpu": "CpuController", "cpuacct": "CpuAcctController", "memory": "MemoryController"}


class V1Cgroup(Cgroup):
    version = 1

    @property
    def controller(self):
        """cgroupspy's controller object for this cgroup (cpu.shares, memory.limit_in_bytes, ...)."""
        from cgroupspy import controllers
        return getattr(controllers, _CGROUPSPY_CONTROLLERS[self.controller_name])(_Node(self.path.encode()))


    def kill(self) -> None:
        """SIGKILL every process. In the freezer hierarchy they are frozen first, so none can fork
        away while we go through them (as Mesos's LinuxLauncher does); elsewhere, repeat until empty."""
        frozen = self.controller_name == "freezer" and self._set_frozen(True)
        for _attempt in range(1000):
            pids = self.procs()
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if frozen or not pids:
                break
            time.sleep(0.001)
        if frozen:
            self._set_frozen(False)

    def _set_frozen(self, frozen: bool) -> bool:
        want = "FROZEN" if frozen else "THAWED"
        try:
            self.write("freezer.state", want)
            for _ in range(5000):
                if self.read("freezer.state").strip() == want:
                    return True
                time.sleep(0.001)
        except FileNotFoundError:
            pass
        return False


class _Node:
    """All that cgroupspy's controllers read of a tree node: its path. cgroupspy.nodes itself
    would import logging (9 ms of a cold launch) and walk trees corral has no use for."""
    __slots__ = ("full_path",)

    def __init__(self, full_path: bytes):
        self.full_path = full_path
