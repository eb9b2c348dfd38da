"""cgroups/pids: a limit on the number of processes (and threads) a container may have.

The limit is the container's (--pids-limit, Mesos has none), else the agent's
--cgroups_pids_limit, else none, and then no pids cgroup is made. `usage` reports the
container's processes, as before (from the launcher's tracking cgroup). A fork
beyond the limit fails with EAGAIN, so a fork bomb stops there and the host is unaffected.
"""

from __future__ import annotations

from corral import cgroups

from .. import Isolator, LaunchInfo


class PidsIsolator(Isolator):

    def __init__(self, flags):
        super().__init__(flags)
        # container -> its limit, from prepare() to forked(): the same launch, in this process
        self._pending: dict[str, int] = {}

    def _cgroup(self, container_id: str):
        return cgroups.container("pids", self.flags.cgroups_root, container_id)

    def prepare(self, container_id, config):
        limit = config.pids_limit if config.pids_limit is not None else self.flags.cgroups_pids_limit
        if limit is None:           # no limit: no cgroup, and nothing for a launch to pay
            return None
        cgroup = self._cgroup(container_id)
        cgroup.create()
        self._pending[container_id] = limit
        return LaunchInfo(cgroups=[cgroup])

    def forked(self, container_id):
        # Limited here, after the fork (see cgroups/cpu).
        limit = self._pending.pop(container_id, None)
        if limit is not None:
            self._cgroup(container_id).set_max(limit)

    def cleanup(self, container_id):
        self._pending.pop(container_id, None)
        self._cgroup(container_id).remove()
