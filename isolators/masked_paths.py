"""linux/masked_paths: runc's default masked and read-only paths of /proc and /sys.

Masked: what a container has no business reading (the kernel's memory, keys, timers, the
scheduler's debug data, ACPI and SCSI controls, the firmware's tables). Read-only: the kernel's
knobs (/proc/sys: core_pattern, say) and the sysrq trigger. With or without a root filesystem:
init applies them in the container's private mount namespace, after its /proc is mounted.
"""

from __future__ import annotations

from . import Isolator, LaunchInfo

MASKED = ("/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
          "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap")
READONLY = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


class MaskedPathsIsolator(Isolator):

    def prepare(self, container_id, config):
        from corral.confine import Confinement
        return LaunchInfo(confinement=Confinement(masked_paths=MASKED, readonly_paths=READONLY))
