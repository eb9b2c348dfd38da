"""cgroup2 devices: the hook. cgroup2 has no devices files; the access list is a BPF program of
type BPF_PROG_TYPE_CGROUP_DEVICE attached to the cgroup (runc: fs2/devices.go and devicefilter).
Until corral loads one, asking for device rules on cgroup2 fails plainly."""

from __future__ import annotations

from .. import CgroupsUnavailable
from . import V2Cgroup


class Devices(V2Cgroup):

    def _unsupported(self, *_args) -> None:
        raise CgroupsUnavailable("device rules on cgroup2 need a BPF device program, which corral does not load yet")

    allow = deny = rules = _unsupported
