"""v1 devices: the device access list, written rule by rule to devices.allow and devices.deny.

A rule is '<type> <major>:<minor> <access>', e.g. 'c 1:3 rwm' (type a, b or c; '*' for any
number; access of r, w, m). A new cgroup inherits its parent's list: set_rules denies 'a' first.
"""

from __future__ import annotations

from . import V1Cgroup


class Devices(V1Cgroup):

    def set_rules(self, rules: list[str]) -> None:
        """Allow exactly `rules` (and nothing else) in this cgroup."""
        self.write("devices.deny", "a")
        self.add_rules(rules)

    def add_rules(self, rules: list[str]) -> None:
        for rule in rules:                      # one rule per write(2): the kernel parses one line each
            self.write("devices.allow", rule)

    def rules(self) -> list[str]:
        """The cgroup's access list (devices.list), one rule a line."""
        return self.read("devices.list").split("\n")[:-1]
