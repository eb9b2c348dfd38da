"""Isolators by name: the built-in ones, then those other distributions add to `corral.isolators`."""

from __future__ import annotations

import importlib

from corral.types import InvalidInput

from . import Isolator, IsolatorFlags

ENTRY_POINT_GROUP = "corral.isolators"

# name -> "module:Class", imported only when asked for, to keep the launch path light.
BUILTIN = {
    "cgroups/cpu": "corral.isolators.cgroups.cpu:CpuIsolator",
    "cgroups/mem": "corral.isolators.cgroups.mem:MemIsolator",
    "namespaces/pid": "corral.isolators.namespaces:PidNamespaceIsolator",
    "namespaces/ipc": "corral.isolators.namespaces:IpcNamespaceIsolator",
    "namespaces/uts": "corral.isolators.namespaces:UtsNamespaceIsolator",
    "filesystem/linux": "corral.isolators.filesystem:LinuxFilesystemIsolator",
    "network/ports": "corral.isolators.network_ports:PortsIsolator",
    "linux/capabilities": "corral.isolators.capabilities:CapabilitiesIsolator",
    "linux/nnp": "corral.isolators.capabilities:NoNewPrivsIsolator",
    "linux/seccomp": "corral.isolators.seccomp:SeccompIsolator",
    "linux/devices": "corral.isolators.devices:LinuxDevicesIsolator",
    "linux/masked_paths": "corral.isolators.masked_paths:MaskedPathsIsolator",
    "cgroups/devices": "corral.isolators.cgroups.devices:DevicesIsolator",
    "cgroups/pids": "corral.isolators.cgroups.pids:PidsIsolator",
    "posix/rlimits": "corral.isolators.rlimits:RlimitsIsolator",
}

# What confines a container as runc and Docker do (docs/confinement.md): on by default, all
# left out for a privileged container. Unlike mesos-agent, whose default confines nothing.
CONFINEMENT = ("linux/capabilities", "linux/nnp", "linux/seccomp", "linux/masked_paths", "cgroups/devices",
               "linux/devices", "cgroups/pids", "posix/rlimits")
DEFAULT_ISOLATION = ("cgroups/cpu", "cgroups/mem", "namespaces/pid", "namespaces/ipc", *CONFINEMENT)


def parse_isolation(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if len(set(names)) != len(names):
        raise InvalidInput(f"isolator named twice in --isolation {text!r}")
    return names


def isolator_class(name: str) -> type[Isolator]:
    target = BUILTIN.get(name)
    if target is None:
        # importlib.metadata costs tens of ms: read the installed distributions only when needed.
        from importlib.metadata import entry_points
        found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
        if not found:
            known = ", ".join(sorted(BUILTIN) + sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)))
            raise InvalidInput(f"unknown isolator {name!r} (known: {known})")
        target = found[0].value
    module_name, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(cls, type) and issubclass(cls, Isolator)):
        raise InvalidInput(f"isolator {name!r} ({target}) is not a corral Isolator")
    return cls


def create_isolators(names: list[str], flags: IsolatorFlags) -> list[Isolator]:
    isolators = []
    for name in names:
        isolator = isolator_class(name)(flags)
        isolator.name = name
        isolators.append(isolator)
    return isolators
