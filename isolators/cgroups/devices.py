"""cgroups/devices: which device nodes a container may read, write and make: runc's default
list (isolators.devices.DEFAULT_RULES) plus what the container asks for (--device, the agent's
--allowed_devices), the devices its custom resources give it (each isolator's devices():
gpu/nvidia's GPUs, a plug-in's), and a later allow(). The devices cgroup of corral.cgroups holds the
list: v1's devices.allow/deny, or cgroup2's BPF device program, set in isolate(), after the fork."""

from __future__ import annotations

from corral import cgroups

from .. import Isolator, LaunchInfo
from ..devices import DEFAULT_RULES, container_devices

_DEFAULT_RULES = tuple(device.rule() for device in DEFAULT_RULES)


class DevicesIsolator(Isolator):

    def __init__(self, flags):
        super().__init__(flags)
        # container -> its rules, from prepare() to isolate(): the same launch, in this process
        self._rules: dict[str, list[str]] = {}

    def _cgroup(self, container_id: str):
        return cgroups.container("devices", self.flags.cgroups_root, container_id)

    def prepare(self, container_id, config):
        self._rules[container_id] = [*_DEFAULT_RULES, *(device.rule() for device in
                                                        container_devices(config, self.flags, self.peers, container_id))]
        cgroup = self._cgroup(container_id)
        # On cgroup2 this is the launcher's tracking cgroup, which it makes and clones init into,
        # unless it tracks in the v1 freezer; else a cgroup of its own, which init joins.
        if cgroup.version == 2 and self.flags.launcher_tracking == "unified":
            return None
        cgroup.create()
        return LaunchInfo(cgroups=[cgroup])

    def isolate(self, container_id, pid):
        # A launch's rules go on here, after the fork, while init sets itself up: the task
        # cannot start before every isolate() has returned.
        rules = self._rules.pop(container_id, None)
        if rules is not None:
            self._cgroup(container_id).set_rules(rules)

    def allow(self, container_id: str, devices) -> None:
        """Let a container this isolator prepared use more devices (what a GPU isolator asks)."""
        rules = [device.rule() for device in devices]
        if container_id in self._rules:
            self._rules[container_id] += rules       # not isolated yet: they go on with the rest
        else:
            self._cgroup(container_id).add_rules(rules)

    def cleanup(self, container_id):
        self._rules.pop(container_id, None)
        self._cgroup(container_id).remove()
