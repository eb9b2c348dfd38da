"""Fixtures for the agent's tests: blocks of ports free on this host, and listeners on loopback."""

from __future__ import annotations

import random
import socket

import pytest

from agent.ports import HostPorts


def free_port_block(size: int) -> int:
    """The first port of `size` consecutive ports below the ephemeral range that nothing uses now."""
    low = HostPorts().ephemeral().spans[0][0]
    bound = HostPorts().bound()
    for _ in range(200):
        base = random.randrange(20000, low - size)
        if not any(port in bound for port in range(base, base + size)):
            return base
    raise RuntimeError(f"no {size} free ports in a row below {low}")


@pytest.fixture
def port_block():
    return free_port_block


@pytest.fixture
def listen():
    """listen(port, family=AF_INET): a real TCP listener on loopback, closed after the test."""
    opened = []

    def open_listener(port: int, family=socket.AF_INET, kind=socket.SOCK_STREAM):
        s = socket.socket(family, kind)
        s.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", port))
        if kind == socket.SOCK_STREAM:
            s.listen()
        opened.append(s)
        return s
    yield open_listener
    for s in opened:
        s.close()
