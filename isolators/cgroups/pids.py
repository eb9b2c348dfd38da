"""cgroups/pids: a limit on the number of processes (and threads) a container may have.

The limit is the container's (--pids-limit, Mesos has none), else the agent's
--cgroups_pids_limit, else none, and then no pids cgroup is made. `usage` reports the
container's processes, as before (from the launcher's tracking cgroup). A fork
beyond the limit fails with EAGAIN, so a fork bomb stops there and the host is unaffected.
"""

from __future__ import annotations

from corral import cgroups

from .. import Isolator


class PidsIsolator(Isolator):

    def _cgroup(self, container_id: str):
        return cgroups.container("pids", self.flags.cgroups_root, container_id)

    def prepare(self, container_id, config):
        limit = config.pids_limit if config.pids_limit is not None else self.flags.cgroups_pids_limit
        if limit is None:
            return              # no limit: no cgroup, and nothing for a launch to pay
        cgroup = self._cgroup(container_id)
        cgroup.create()
        cgroup.set_max(limit)

    def isolate(self, container_id, pid):
        cgroup = self._cgroup(container_id)
        if cgroup.exists():
            cgroup.attach(pid)

    def cleanup(self, container_id):
        self._cgroup(container_id).remove()
