"""What a test needs to know of this host's cgroups layout (v1, hybrid or pure cgroup2)."""

from __future__ import annotations

import os

import pytest

from corral.cgroups import hierarchies


def cgroup_of(proc_cgroup: str, controller: str) -> str | None:
    """The cgroup that /proc/PID/cgroup text puts the process in for `controller`: the line of
    the v1 hierarchy that holds it, else cgroup2's ('0::/path'), where it lives on this host."""
    on_v1 = controller in hierarchies().v1
    for line in proc_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        if (controller in controllers.split(",")) if on_v1 else controllers == "":
            return path
    return None


def needs_hierarchy(controller: str):
    """Skip unless this host mounts `controller`'s hierarchy: 'unified' is cgroup2's (v2 and
    hybrid hosts), any other a v1 controller (v1 and hybrid hosts)."""
    h = hierarchies()
    if controller == "unified":
        return pytest.mark.skipif(h.v2 is None, reason=f"needs a cgroup2 mount (this host: {h.mode})")
    return pytest.mark.skipif(controller not in h.v1,
                              reason=f"needs the v1 {controller} hierarchy of a v1 or hybrid host (this host: {h.mode})")


def outside_device() -> tuple[str, int, int]:
    """A character device this host has that runc's default device list does not allow, to be
    opened read-only only: loop-control (the cgroup2 guest has no loop driver: kmsg there);
    its path, major and minor."""
    for path in ("/dev/loop-control", "/dev/kmsg"):
        if os.path.exists(path):
            rdev = os.stat(path).st_rdev
            return path, os.major(rdev), os.minor(rdev)
    pytest.skip("neither /dev/loop-control nor /dev/kmsg exists here")
