"""linux/masked_paths: runc's default masked and read-only paths of /proc and /sys.

Masked: what a container has no business reading (the kernel's memory, keys, timers, the
scheduler's debug data, ACPI and SCSI controls, the firmware's tables). Read-only: the kernel's
knobs (/proc/sys: core_pattern, say) and the sysrq trigger. With or without a root filesystem:
init applies them in the container's private mount namespace, after its /proc is mounted.

Only the paths this kernel has go to init: a lookup in a fresh /proc, even of a name that is
not there, costs init tens of microseconds, and most kernels lack half of runc's list.
"""

from __future__ import annotations

import os
import stat

from . import Isolator, LaunchInfo

MASKED = ("/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
          "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap")
READONLY = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# The filesystems a container mounts afresh at these places: what a fresh instance holds is
# what the container's own will (the host's /proc may be mounted with subset=pid, say).
_FRESH = {"proc": "proc", "sys": "sysfs"}


def on_this_kernel(paths: tuple[str, ...]) -> dict[str, bool | None]:
    """Those of `paths` this kernel's proc and sysfs have, each with whether it is a directory,
    looked up in instances of them mounted nowhere; a path elsewhere is kept, its kind unknown
    (None). Where those instances cannot be made (a kernel before 5.2), every path, kinds
    unknown: init skips a path that is missing, at the price of the lookup."""
    from corral import linux
    roots: dict[str, int] = {}
    found: dict[str, bool | None] = {}
    try:
        for path in paths:
            top, _, rest = path.lstrip("/").partition("/")
            if top not in _FRESH or not rest:
                found[path] = None
                continue
            if top not in roots:
                roots[top] = linux.detached_mount(_FRESH[top])
            try:
                found[path] = stat.S_ISDIR(os.stat(rest, dir_fd=roots[top], follow_symlinks=False).st_mode)
            except FileNotFoundError:
                pass
    except OSError:
        return dict.fromkeys(paths)
    finally:
        for fd in roots.values():
            os.close(fd)
    return found


_launch_info: LaunchInfo | None = None      # the same for every container of this kernel: made once


class MaskedPathsIsolator(Isolator):

    def prepare(self, container_id, config):
        global _launch_info
        if _launch_info is None:
            from corral.confine import Confinement
            found = on_this_kernel(MASKED + READONLY)
            _launch_info = LaunchInfo(confinement=Confinement(
                masked_paths=tuple(p for p in MASKED if p in found),
                masked_dirs=tuple(p for p in MASKED if found.get(p)),
                readonly_paths=tuple(p for p in READONLY if p in found)))
        return _launch_info
