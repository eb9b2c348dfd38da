"""cgroup2 pids: pids.max and pids.current, the files v1 has too."""

from __future__ import annotations

from ..fs.pids import PidsFiles
from . import V2Cgroup


class Pids(PidsFiles, V2Cgroup):
    pass
