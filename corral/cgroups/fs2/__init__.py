"""cgroup2 (runc: libcontainer/cgroups/fs2): a container's cgroup on the unified hierarchy.

Containers are leaves: processes live only in the cgroups corral creates at <root>/<id>, never
in <root> itself, whose cgroup.subtree_control hands the controllers down (the rule of no
internal processes). A controller reaches a cgroup once every ancestor below the mount has it in
cgroup.subtree_control; corral writes that only from the mount's child downwards, inside its own
root's path, never the host's root cgroup (whose controllers the host enables, as systemd does).
"""

from __future__ import annotations

import errno
import os

from ..base import Cgroup


class V2Cgroup(Cgroup):
    version = 2

    def create(self) -> None:
        from .. import hierarchies
        if self.controller_name in hierarchies().v2_controllers:     # not 'unified', nor 'devices'
            self._enable_in_ancestors()
        super().create()

    def _enable_in_ancestors(self) -> None:
        """Let the controller reach this cgroup: enable it in each ancestor's subtree_control
        below the mount point (the host's root cgroup must already offer it)."""
        from .. import hierarchies
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

    def attach(self, pid: int) -> None:
        """Move `pid` here. A controller's cgroup on cgroup2 is the directory of the container's
        tracking cgroup, where the launcher has placed init already: then nothing is written (a
        cgroup.procs write takes the kernel's cgroup_threadgroup_rwsem even when it moves
        nothing). The tracking cgroup itself ('unified') is written without asking: the launcher
        moves only a process that is elsewhere, and asking costs more than the move (reading
        /proc/PID/cgroup of a process that is forking waits for the fork: 0.5 ms a launch)."""
        if self.controller_name != "unified" and self.holds(pid):
            return
        super().attach(pid)

    def holds(self, pid: int) -> bool:
        """Whether process `pid` is in this very cgroup (its /proc/PID/cgroup line '0::/path')."""
        from .. import hierarchies
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                for line in f:
                    if line.startswith("0::"):
                        return os.path.join(hierarchies().v2, line[3:].strip().lstrip("/")) == self.path
        except (FileNotFoundError, ProcessLookupError):
            pass
        return False

    def populated(self) -> bool:
        try:
            return self.read_keyed("cgroup.events").get("populated", 0) == 1
        except FileNotFoundError:
            return False

    def freeze(self, frozen: bool) -> bool:
        """Write cgroup.freeze and wait until cgroup.events says the subtree is (un)frozen."""
        return self.settle("cgroup.freeze", "1" if frozen else "0",
                           lambda: self.read_keyed("cgroup.events").get("frozen", 0) == int(frozen))

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
            if e.errno == errno.ENODEV:     # removed meanwhile (a destroy's teardown): nothing is left
                return
            if e.errno not in (errno.EINVAL, errno.EACCES):
                raise
        self.freeze(True)
        self.kill_frozen()
