"""network/ports: a container may listen only on the agent's ports it was given (Mesos: network/ports).

The container shares the host's network namespace, so nothing stops it from binding any port.
With enforcement on, every `container_ports_watch_interval` seconds the isolator looks at the
TCP sockets (IPv4 and IPv6) that the container's processes hold in LISTEN state; one on a port
of the agent's range that the container was not given is a limitation. Ports outside the
agent's range are not the agent's to police.

The container's ports are kept in <runtime-dir>/isolators/network-ports/<id>.json, so that any
process (a restarted agent, the CLI) can check a container it did not launch.
"""

from __future__ import annotations

import os

from corral import cgroups, sockets
from corral.files import read_json, write_json
from corral.ranges import Ranges
from corral.types import REASON_CONTAINER_LIMITATION, Limitation

from . import Isolator, Watch


class PortsIsolator(Isolator):

    def _path(self, container_id: str) -> str:
        return os.path.join(self.flags.runtime_dir, "isolators", "network-ports", f"{container_id}.json")

    def prepare(self, container_id, config):
        path = self._path(container_id)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_json(path, config.resources.ports or [])

    def watch(self, container_id):
        if not self.flags.enforce_container_ports:
            return None
        return Watch(check=lambda: self.limitation(container_id),
                     interval=self.flags.container_ports_watch_interval)

    def limitation(self, container_id):
        if not self.flags.enforce_container_ports:
            return None
        given = Ranges(read_json(self._path(container_id), default=[]))
        agents = Ranges(self.flags.container_ports_isolated_range)
        unallowed = sorted(p for p in self.listening(container_id) if p in agents and p not in given)
        if not unallowed:
            return None
        listed = ", ".join(map(str, unallowed))
        return Limitation(REASON_CONTAINER_LIMITATION,
                          f"Container {container_id} is listening on port{'s' if len(unallowed) > 1 else ''} "
                          f"{listed}, not among the ports it was given ({given or 'none'})")

    def listening(self, container_id: str) -> set[int]:
        """The TCP ports the container's processes listen on, read in each of their network namespaces."""
        held_by_namespace: dict[str, tuple[int, set[int]]] = {}
        for pid in cgroups.tracked_pids(self.flags.cgroups_root, container_id):
            namespace = sockets.net_namespace(pid)
            if namespace is None:
                continue        # exited meanwhile
            _, inodes = held_by_namespace.setdefault(namespace, (pid, set()))
            inodes |= sockets.socket_inodes(pid)
        ports = set()
        for pid, inodes in held_by_namespace.values():
            if inodes:
                ports |= {s.port for s in sockets.sockets(pid, ("tcp", "tcp6")) if s.listening and s.inode in inodes}
        return ports

    def cleanup(self, container_id):
        try:
            os.unlink(self._path(container_id))
        except FileNotFoundError:
            pass
