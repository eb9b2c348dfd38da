"""cgroups/devices: which device nodes a container may read, write and make: runc's default
list (isolators.devices.DEFAULT_RULES) plus what the container asks for (--device, the agent's
--allowed_devices), the devices its custom resources give it (each isolator's devices():
gpu/nvidia's GPUs, a plug-in's), and a later allow(). The devices cgroup of corral.cgroups holds the
list: v1's devices.allow/deny, or cgroup2's BPF device program, set in isolate(), after the fork."""

from __future__ import annotations

from corral import cgroups

from .. import Isolator
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

    def isolate(self, container_id, pid):
        cgroup = self._cgroup(container_id)
        # A launch's rules go on here, after the fork, while init sets itself up: the task
        # cannot start before every isolate() has returned.
        rules = self._rules.pop(container_id, None)
        # On cgroup2 this is the launcher's tracking cgroup, made and holding init already,
        # unless the launcher tracks in the v1 freezer.
        tracked = cgroup.version == 2 and self.flags.launcher_tracking == "unified"
        if rules is not None:
            if not tracked:
                cgroup.create()
            cgroup.set_rules(rules)
        if not tracked:
            cgroup.attach(pid)

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
