"""cgroups v1, v2 and hybrid hosts behind one small interface.

`hierarchies()` reads the host's cgroup mounts once per process. `cgroup_for(controller, path)`
returns the container's cgroup in whichever hierarchy holds that controller: a V1Cgroup
(cgroupspy for the controllers it models) or a V2Cgroup (the cgroup2 files). Everything
corral creates lives under the cgroups root it is given; nothing outside it is touched.
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


def cgroup_for(controller: str, path: str):
    """The cgroup at `path` (relative, e.g. 'corral/<id>') in the hierarchy that has `controller`.

    v1 is preferred where the controller is mounted there (hybrid hosts keep their controllers
    on v1); 'unified' names the cgroup2 hierarchy itself, which tracks processes even when it
    offers no controllers.
    """
    from .v1 import V1Cgroup
    from .v2 import V2Cgroup
    h = hierarchies()
    if controller != "unified" and controller in h.v1:
        return V1Cgroup(controller, os.path.join(h.v1[controller], path))
    if h.v2 and (controller == "unified" or controller in h.v2_controllers):
        return V2Cgroup(controller, os.path.join(h.v2, path))
    raise CgroupsUnavailable(f"the {controller} cgroup controller is not available on this host "
                             f"(cgroups mode {h.mode})")


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
