"""cgroups v1, v2 and hybrid hosts behind one version-neutral layer (runc: libcontainer/cgroups).

The shared layer below containerizers and isolators. `hierarchies()` reads the host's cgroup
mounts once per process. `container(controller, root, id)` is the one place that names a
container's cgroup (`<root>/<id>`); it returns that cgroup in whichever hierarchy holds the
controller, as an object whose operations are the same in either version:

    controller   v1 (fs/)                                v2 (fs2/)
    cpu          cpu.shares, cpu.cfs_*, cpuacct.stat     cpu.weight, cpu.max, cpu.stat
    memory       memory.limit_in_bytes, oom_control      memory.max, memory.events, memory.peak
    pids         pids.max, pids.current                  the same files
    devices      devices.allow, devices.deny             (a BPF program: not yet)
    tracking     the freezer hierarchy                   the unified hierarchy (cgroup.kill, .freeze)

Callers never test the version. Everything corral creates lives under the cgroups root it is
given; nothing outside it is written. Each controller's module is imported on first use.
"""

from __future__ import annotations

import os

from corral.record import Record
from corral.types import CorralError


class CgroupsUnavailable(CorralError):
    pass


class Hierarchies(Record):
    """Where the host mounts its cgroups: mode is 'v1', 'v2' or 'hybrid'."""
    v1: dict[str, str] = dict     # controller -> mount point
    v2: str | None = None                                # the cgroup2 mount point
    v2_controllers: frozenset[str] = frozenset()         # controllers the cgroup2 root offers
    mount_points: list[str] = list                       # every cgroup mount, named hierarchies too

    @property
    def mode(self) -> str:
        if self.v1 and self.v2:
            return "hybrid"
        return "v2" if self.v2 else "v1"


_cached: Hierarchies | None = None


def hierarchies() -> Hierarchies:
    global _cached
    if _cached is None:
        _cached = _read_mounts("/proc/self/mountinfo")
    return _cached


def _read_mounts(mountinfo: str) -> Hierarchies:
    found = Hierarchies()
    with open(mountinfo) as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype, _source, super_options = right.split()[:3]
            mount_point = left.split()[4]
            if fstype in ("cgroup", "cgroup2"):
                found.mount_points.append(mount_point)
            if fstype == "cgroup2" and found.v2 is None:
                found.v2 = mount_point
            elif fstype == "cgroup":
                for option in super_options.split(","):
                    if option not in ("rw", "ro") and "=" not in option:
                        found.v1.setdefault(option, mount_point)
    if found.v2:
        try:
            with open(os.path.join(found.v2, "cgroup.controllers")) as f:
                found.v2_controllers = frozenset(f.read().split())
        except OSError:
            pass
    return found


# The class of a controller's cgroup in each version: "module:Class" under this package.
_V1 = {"cpu": "fs.cpu:Cpu", "memory": "fs.memory:Memory", "pids": "fs.pids:Pids",
       "devices": "fs.devices:Devices", "freezer": "fs.freezer:Freezer"}
_V2 = {"cpu": "fs2.cpu:Cpu", "memory": "fs2.memory:Memory", "pids": "fs2.pids:Pids",
       "devices": "fs2.devices:Devices"}


_classes: dict[str, type] = {}      # "module:Class" -> the class, imported once


def _class(table: dict[str, str], controller: str, default: str):
    target = table.get(controller, default)
    found = _classes.get(target)
    if found is None:
        from importlib import import_module     # here: a cold exec, which asks no controller, goes without
        module, _, name = target.partition(":")
        found = _classes[target] = getattr(import_module(f"{__name__}.{module}"), name)
    return found


def cgroup_for(controller: str, path: str):
    """The cgroup at `path` (relative to the mount, e.g. 'corral/<id>') in the hierarchy that has
    `controller`, with that controller's operations.

    v1 is preferred where the controller is mounted there (hybrid hosts keep their controllers
    on v1), but for devices; 'unified' names the cgroup2 hierarchy itself, which tracks processes
    even when it offers no controllers; cgroup2 has no devices controller, its device rules are a
    BPF program on the cgroup.
    """
    h = hierarchies()
    # Devices: cgroup2's device program wherever a cgroup2 hierarchy is mounted (the kernel runs it
    # on hybrid hosts too): one bpf(2) attach to the cgroup the tracking made, where a v1 devices
    # cgroup would cost a mkdir, a dozen writes and a migration per launch.
    if controller not in ("unified", "devices") or not h.v2:
        if controller in h.v1:
            return _class(_V1, controller, "fs:V1Cgroup")(controller, os.path.join(h.v1[controller], path))
    if h.v2 and (controller in ("unified", "devices") or controller in h.v2_controllers):
        return _class(_V2, controller, "fs2:V2Cgroup")(controller, os.path.join(h.v2, path))
    raise CgroupsUnavailable(f"the {controller} cgroup controller is not available on this host "
                             f"(cgroups mode {h.mode})")


def container(controller: str, root: str, container_id: str):
    """The cgroup of container `container_id` under cgroups root `root`: <root>/<id>, the one
    place that names it. (The launcher's supervisors' cgroup is a 'container' of this root too.)"""
    return cgroup_for(controller, f"{root}/{container_id}")


# -- tracking: the hierarchy that holds every process of a container ---------------------------

def tracking_controller() -> str:
    """The hierarchy that tracks a container's processes: cgroup2's wherever it is mounted (v2
    and hybrid hosts: cgroup.kill and cgroup.events need no controller), else the v1 freezer's."""
    return "unified" if hierarchies().v2 else "freezer"


def single_hierarchy() -> bool:
    """Whether one hierarchy holds every controller (a pure cgroup2 host): a process placed in a
    container's tracking cgroup is then in all of its cgroups."""
    return hierarchies().mode == "v2"


def tracked_pids(root: str, container_id: str) -> set[int]:
    """Every process of the container, from whichever tracking hierarchy holds it (a launcher
    may have been told to track in the v1 freezer on a host that also mounts cgroup2)."""
    pids = set()
    for tracking in ("unified", "freezer"):
        try:
            pids.update(container(tracking, root, container_id).procs())
        except CgroupsUnavailable:
            pass
    return pids


def container_ids(tracking: str, root: str) -> set[str]:
    """The names of the cgroups directly below `root` in the `tracking` hierarchy."""
    top = os.path.dirname(container(tracking, root, "x").path)
    try:
        return {e.name for e in os.scandir(top) if e.is_dir()}
    except FileNotFoundError:
        return set()


def directories_of(pid: int, root: str, container_id: str) -> list[str]:
    """The directories of process `pid`'s cgroups that are the container's (<root>/<id>, or below
    it), one per hierarchy that holds it there: where another process is written to be where `pid`
    is (an exec joins its container's init). From /proc/PID/cgroup: no controller is asked."""
    h = hierarchies()
    mine = f"{root}/{container_id}"
    found = []
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            relative = path.lstrip("/")
            if relative != mine and not relative.startswith(mine + "/"):
                continue
            mount = h.v2 if not controllers else h.v1.get(controllers.split(",")[0])
            if mount:
                found.append(os.path.join(mount, relative))
    return found


# -- roots ------------------------------------------------------------------------------------

def root_dirs(root: str) -> list[str]:
    """The directories of cgroups root `root` (e.g. 'corral') in every mounted hierarchy."""
    return sorted({os.path.join(m, root) for m in hierarchies().mount_points if os.path.isdir(os.path.join(m, root))})


def remove_root(root: str) -> list[str]:
    """rmdir the cgroups root `root` and everything below it, in every hierarchy; those left."""
    return [left for top in root_dirs(root) for left in remove_tree(top)]


def remove_tree(top: str) -> list[str]:
    """rmdir every cgroup below and including `top`, deepest first; returns those left (not empty)."""
    left = []
    for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
        try:
            os.rmdir(dirpath)
        except FileNotFoundError:
            pass
        except OSError:
            left.append(dirpath)
    return left
