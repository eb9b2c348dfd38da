"""v1 devices: the device access list, written rule by rule to devices.allow and devices.deny.

A rule is '<type> <major>:<minor> <access>', e.g. 'c 1:3 rwm' (type a, b or c; '*' for any
number; access of r, w, m). A new cgroup inherits its parent's list: deny('a') first empties it.
"""

from __future__ import annotations

from . import V1Cgroup


class Devices(V1Cgroup):

    def allow(self, rule: str) -> None:
        self.write("devices.allow", rule)

    def deny(self, rule: str) -> None:
        self.write("devices.deny", rule)

    def rules(self) -> list[str]:
        """The cgroup's access list (devices.list), one rule a line."""
        return self.read("devices.list").split("\n")[:-1]
