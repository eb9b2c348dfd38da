"""A container's cgroup on the cgroup2 (unified) hierarchy: leaf cgroups, controllers enabled
through the ancestors' cgroup.subtree_control."""

from __future__ import annotations

import errno
import os
import signal
import time

from .base import Cgroup


class V2Cgroup(Cgroup):
    version = 2

    def create(self) -> None:
        if self.controller_name != "unified":
            self._enable_in_ancestors()
        super().create()

    def _enable_in_ancestors(self) -> None:
        """Let the controller reach this cgroup: enable it in each ancestor's subtree_control
        below the mount point (the host's root cgroup must already offer it)."""
        from . import hierarchies
        mount = hierarchies().v2
        current = mount
        for part in os.path.relpath(os.path.dirname(self.path), mount).split(os.sep):
            current = os.path.join(current, part)
            os.makedirs(current, exist_ok=True)
            control = os.path.join(current, "cgroup.subtree_control")
            with open(control) as f:
                if self.controller_name in f.read().split():
                    continue
            with open(control, "w") as f:
                f.write(f"+{self.controller_name}")

    def populated(self) -> bool:
        try:
            return self.read_keyed("cgroup.events").get("populated", 0) == 1
        except FileNotFoundError:
            return False

    def freeze(self, frozen: bool) -> None:
        """Write cgroup.freeze and wait until cgroup.events says the subtree is (un)frozen."""
        self.write("cgroup.freeze", "1" if frozen else "0")
        for _ in range(5000):
            if self.read_keyed("cgroup.events").get("frozen", 0) == int(frozen):
                return
            time.sleep(0.001)

    def kill(self) -> None:
        """cgroup.kill (Linux 5.14+) SIGKILLs the whole subtree at once, forks in flight included;
        on older kernels: freeze, SIGKILL each process, thaw."""
        try:
            self.write("cgroup.kill", "1")
            return
        except FileNotFoundError:
            if not self.exists():
                return
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.EACCES):
                raise
        self.freeze(True)
        for pid in self.procs():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.freeze(False)
