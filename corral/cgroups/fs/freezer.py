"""v1 freezer: the tracking hierarchy of v1-only hosts; freeze, and kill a frozen tree."""

from __future__ import annotations

from . import V1Cgroup


class Freezer(V1Cgroup):

    def freeze(self, frozen: bool) -> bool:
        """Write freezer.state and wait until the kernel reports it; whether it did."""
        want = "FROZEN" if frozen else "THAWED"
        return self.settle("freezer.state", want, lambda: self.read("freezer.state").strip() == want)

    def kill(self) -> None:
        """SIGKILL every process, frozen first so that none can fork away while we go through
        them (as Mesos's LinuxLauncher does)."""
        if not self.freeze(True):
            super().kill()
            return
        self.kill_frozen()
