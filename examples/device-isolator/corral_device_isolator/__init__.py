"""devices/config: custom set resources backed by device nodes, as a config file maps them.

    {"fpgas": {"env": "FPGA_DEVICES",
               "devices": {"fpga0": "/dev/fpga0", "fpga1": {"host": "/dev/fpga1", "container": "/dev/fpga1"}}}}

The file is $CORRAL_DEVICES_CONFIG, else /etc/corral/devices.json. Each resource named there
is, in the agent's --resources, either a set whose items all have a device node
('fpgas:{fpga0,fpga1}'), or the number of the config's devices ('fpgas:2', as gpus:2), whole
units the agent gives by name. A container given fpga0 may use that node alone of them (the
devices cgroup), has it in its /dev (with an image), and finds the names it was given in the
resource's variable (FPGA_DEVICES=fpga0).

It uses only corral's public interface for isolators: isolators.Isolator, isolators.LaunchInfo,
isolators.devices.host_device and corral.types.InvalidInput.
"""

from __future__ import annotations

import json
import os

from corral.types import InvalidInput
from corral.isolators import Isolator, LaunchInfo
from corral.isolators.devices import host_device

DEFAULT_CONFIG = "/etc/corral/devices.json"


def load_config(path: str | None = None) -> dict[str, dict]:
    """resource name -> {"env": NAME, "devices": {item: (host path, container path)}}; one-line errors."""
    path = path or os.environ.get("CORRAL_DEVICES_CONFIG") or DEFAULT_CONFIG
    try:
        with open(path) as f:
            raw = json.load(f)
    except OSError as e:
        raise InvalidInput(f"devices/config: cannot read {path}: {e.strerror}") from None
    except ValueError as e:
        raise InvalidInput(f"devices/config: {path} is not JSON: {e}") from None
    if not isinstance(raw, dict) or not raw:
        raise InvalidInput(f'devices/config: {path} must map resources to {{"devices": {{ITEM: PATH}}}}')
    config = {}
    for resource, spec in raw.items():
        devices = spec.get("devices") if isinstance(spec, dict) else None
        if not isinstance(devices, dict) or not devices:
            raise InvalidInput(f'devices/config: {resource} in {path} needs "devices": {{ITEM: PATH}}')
        nodes = {}
        for item, node in devices.items():
            host = node if isinstance(node, str) else node.get("host") if isinstance(node, dict) else None
            container = node.get("container", host) if isinstance(node, dict) else host
            if not isinstance(host, str) or not isinstance(container, str):
                raise InvalidInput(f'devices/config: {resource}.{item} in {path} must be a path or '
                                   f'{{"host": PATH, "container": PATH}}')
            nodes[item] = (host, container)
        env = spec.get("env", f"{resource.upper()}_DEVICES")
        if not isinstance(env, str) or not env or "=" in env:
            raise InvalidInput(f"devices/config: {resource}.env in {path} must be a variable name")
        config[resource] = {"env": env, "devices": nodes}
    return config


class ConfigDevicesIsolator(Isolator):
    def __init__(self, flags):
        super().__init__(flags)
        self.config = load_config()

    @classmethod
    def check_resources(cls, flags, resources):
        config = load_config()
        managed = {}
        for resource, spec in config.items():
            value = resources.get(resource)
            if isinstance(value, float):          # fpgas:2: the config's devices, as whole units
                items, managed[resource] = list(spec["devices"]), list(spec["devices"])
            elif isinstance(value, frozenset):    # fpgas:{fpga0,fpga1}: the set's items
                items, managed[resource] = sorted(value), None
                unknown = sorted(value - set(spec["devices"]))
                if unknown:
                    raise InvalidInput(f"devices/config: {resource} {{{','.join(unknown)}}} in --resources "
                                       "has no device in the config")
            else:
                raise InvalidInput(f"devices/config manages {resource}: give it in --resources, as "
                                   f"{resource}:{{{','.join(spec['devices'])}}} or {resource}:{len(spec['devices'])}")
            for item in items:
                host_device(*spec["devices"][item])    # a character or block device, or one line why not
        return managed

    def _given(self, config) -> dict[str, list[str]]:
        custom = config.resources.custom or {}
        return {resource: custom[resource] for resource in self.config if custom.get(resource)}

    def devices(self, container_id, config):
        return [host_device(*self.config[resource]["devices"][item])
                for resource, items in self._given(config).items() for item in items]

    def prepare(self, container_id, config):
        given = self._given(config)
        if not given:
            return None
        return LaunchInfo(env={self.config[resource]["env"]: ",".join(items) for resource, items in given.items()})
