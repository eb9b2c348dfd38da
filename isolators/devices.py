"""Devices a container may use: the public vocabulary, and linux/devices (nodes in its /dev).

A `Device` is one rule of the devices cgroup: kind ('c', 'b' or 'a'), major and minor (None for
any) and access ('r', 'w', 'm'), plus, for a node to make, its path in the container. Every
container gets runc's default rules (`DEFAULT_RULES`); --device (CLI), the agent's
--allowed_devices (Mesos's DeviceWhitelist) add to them. cgroups/devices
(isolators/cgroups/devices.py) enforces the rules, and its `allow()` lets another isolator
(a GPU isolator, say) add devices to a container; linux/devices makes the added devices' nodes
in a container with its own root filesystem.
"""

from __future__ import annotations

import json
import os
import stat

from corral.record import Record
from corral.types import InvalidInput

from . import Isolator, LaunchInfo


class Device(Record):
    kind: str                   # 'c', 'b', or 'a' (all)
    major: int | None           # None: any
    minor: int | None
    access: str = "rwm"
    path: str | None = None     # where the node goes in the container, if one is to be made
    host: str | None = None     # the host's node it copies

    def rule(self) -> str:
        """The devices cgroup v1 line: 'c 1:3 rwm'."""
        def number(n):
            return "*" if n is None else str(n)
        return f"{self.kind} {number(self.major)}:{number(self.minor)} {self.access}"


def _char(major, minor, path=None):
    return Device("c", major, minor, "rwm", path)


# runc's default allow-list (libcontainer/specconv's AllowedDevices): mknod of any node, and
# read/write of these alone.
DEFAULT_RULES = (
    Device("c", None, None, "m"), Device("b", None, None, "m"),
    _char(1, 3, "/dev/null"), _char(1, 5, "/dev/zero"), _char(1, 7, "/dev/full"), _char(5, 0, "/dev/tty"),
    _char(1, 8, "/dev/random"), _char(1, 9, "/dev/urandom"), _char(5, 1, "/dev/console"),
    _char(136, None), _char(5, 2, "/dev/ptmx"), _char(10, 229, "/dev/fuse"),
)


def host_device(host: str, container: str | None = None, access: str = "rwm") -> Device:
    """The Device of a node on the host (a char or block device), for `container` (default: the same path)."""
    if not os.path.isabs(host):
        raise InvalidInput(f"device {host!r}: the host path must be absolute")
    try:
        st = os.stat(host)
    except OSError as e:
        raise InvalidInput(f"device {host}: {e.strerror}") from None
    if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise InvalidInput(f"device {host}: not a character or block device")
    if not access or set(access) - set("rwm") or len(set(access)) != len(access):
        raise InvalidInput(f"device {host}: access {access!r} must be letters of rwm")
    container = container or host
    if not os.path.isabs(container) or ".." in container.split("/"):
        raise InvalidInput(f"device {host}: the container path {container!r} must be absolute")
    return Device("c" if stat.S_ISCHR(st.st_mode) else "b", os.major(st.st_rdev), os.minor(st.st_rdev),
                  access, os.path.normpath(container), host)


def parse_device(spec: str) -> Device:
    """Docker's --device: HOST[:CONTAINER][:rwm]."""
    parts = spec.split(":") if isinstance(spec, str) else []
    access = "rwm"
    if len(parts) > 1 and parts[-1] and not set(parts[-1]) - set("rwm"):
        access = parts.pop()
    if not 1 <= len(parts) <= 2 or not parts[0]:
        raise InvalidInput(f"invalid device {spec!r}: use HOST[:CONTAINER][:rwm]")
    return host_device(parts[0], parts[1] if len(parts) == 2 else None, access)


def parse_whitelist(text: str) -> list[Device]:
    """Mesos's DeviceWhitelist: {"allowed_devices": [{"device": {"path": "/dev/fuse"},
    "access": {"read": true, "write": true, "mknod": true}}, ...]}."""
    try:
        entries = json.loads(text)["allowed_devices"]
        devices = []
        for entry in entries:
            access = entry.get("access") or {}
            letters = "".join(letter for letter, key in (("r", "read"), ("w", "write"), ("m", "mknod"))
                              if access.get(key) is True)
            devices.append(host_device(entry["device"]["path"], None, letters))
        return devices
    except InvalidInput:
        raise
    except (ValueError, KeyError, TypeError, AttributeError):
        raise InvalidInput('not {"allowed_devices": [{"device": {"path": ...}, "access": {"read": true, ...}}]}') \
            from None


def container_devices(config, flags, peers=(), container_id: str = "") -> list[Device]:
    """The devices a container asked for (--device), those the agent allows every container, and
    those its isolators give it of the custom resources they manage (Isolator.devices: none
    without custom resources, the common case, where no isolator is asked)."""
    found = [*flags.allowed_devices, *(parse_device(spec) for spec in config.devices)]
    if config.resources is not None and config.resources.custom:
        found += [device for peer in peers for device in peer.devices(container_id, config)]
    return found


class LinuxDevicesIsolator(Isolator):
    """linux/devices: the added devices' nodes in the container's own /dev. Without a root
    filesystem the container sees the host's /dev, where a device keeps its host path."""

    def prepare(self, container_id, config):
        devices = container_devices(config, self.flags, self.peers, container_id)
        if not config.rootfs:
            for device in devices:
                if device.path != os.path.normpath(device.host):
                    raise InvalidInput(f"device {device.host}: another container path ({device.path}) "
                                       "needs an image (a root filesystem)")
            return None
        from corral.confine import Confinement, DeviceNode
        nodes = tuple(DeviceNode(d.path, d.kind, d.major, d.minor) for d in devices if d.path)
        return LaunchInfo(confinement=Confinement(device_nodes=nodes)) if nodes else None
