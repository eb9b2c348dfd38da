"""Ports on the host: which are taken, which the kernel hands out itself, and a task's PORT variables.

The allocator picks a container's ports from the agent's ranges minus the ports bound on the
host (any TCP or UDP socket, IPv4 or IPv6, in any state: a TIME_WAIT socket still blocks a
bind) and minus the ephemeral range, from which the kernel picks the local port of every
outgoing connection and of every bind to port 0 at any moment.
"""

from __future__ import annotations

from corral import sockets
from corral.ranges import Ranges

EPHEMERAL_RANGE = "/proc/sys/net/ipv4/ip_local_port_range"


class HostPorts:
    def __init__(self, pid: int | str = "self"):
        self.pid = pid          # whose network namespace: the agent's own, which its tasks share

    def bound(self) -> Ranges:
        return Ranges((s.port, s.port) for s in sockets.sockets(self.pid) if s.port)

    def ephemeral(self) -> Ranges:
        try:
            with open(EPHEMERAL_RANGE) as f:
                low, high = (int(v) for v in f.read().split())
        except (OSError, ValueError):
            return Ranges([(32768, 60999)])     # the kernel's default
        return Ranges([(low, high)])


def port_env(ports: Ranges | None) -> dict[str, str]:
    """PORT0..PORTn-1 in ascending order and PORTS, comma-separated (as Marathon sets them)."""
    values = list(ports or ())
    env = {f"PORT{i}": str(port) for i, port in enumerate(values)}
    if values:
        env["PORTS"] = ",".join(map(str, values))
    return env
