"""The sockets of a network namespace and of a process, read from /proc (as ss and psutil do).

/proc/PID/net/{tcp,tcp6,udp,udp6} list the sockets of PID's network namespace; a process's
own sockets are the `socket:[INODE]` links among its /proc/PID/fd entries.
"""

from __future__ import annotations

import os

TCP_LISTEN = 0x0A
PROTOCOLS = ("tcp", "tcp6", "udp", "udp6")


class Socket:
    __slots__ = ("protocol", "port", "state", "inode")

    def __init__(self, protocol: str, port: int, state: int, inode: int):
        self.protocol, self.port, self.state, self.inode = protocol, port, state, inode

    @property
    def listening(self) -> bool:
        return self.protocol.startswith("tcp") and self.state == TCP_LISTEN

    def __repr__(self):
        return f"Socket({self.protocol}, port {self.port}, state {self.state:#x}, inode {self.inode})"


def sockets(pid: int | str = "self", protocols=PROTOCOLS) -> list[Socket]:
    """Every socket of `pid`'s network namespace (the caller's by default)."""
    found = []
    for protocol in protocols:
        try:
            with open(f"/proc/{pid}/net/{protocol}") as f:
                lines = f.readlines()[1:]
        except (FileNotFoundError, ProcessLookupError):
            continue
        for line in lines:
            fields = line.split()
            # local_address is HEXIP:HEXPORT; st is the TCP state in hex; inode is field 10.
            found.append(Socket(protocol, int(fields[1].rpartition(":")[2], 16), int(fields[3], 16), int(fields[9])))
    return found


def socket_inodes(pid: int) -> set[int]:
    """The inodes of the sockets `pid` holds open (empty if it is gone)."""
    inodes = set()
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return inodes
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue            # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def net_namespace(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None
