"""Fixtures for the agent's tests: blocks of ports free on this host, listeners on loopback, the
agent's flags on a test's own dirs and cgroups root, and agent processes stopped after the test."""

from __future__ import annotations

import socket

import pytest
from tests.agent.agentkit import AgentProcess, free_port_block


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


@pytest.fixture
def agent_flags(corral, port_block):
    """agent_flags(*extra): the agent's flags, on this test's dirs and cgroups root, with 10 ports of its own."""
    from corral.agent.flags import parse
    base = port_block(10)

    def make(*extra: str):
        return parse([f"--work_dir={corral.work_dir}", f"--runtime_dir={corral.runtime_dir}",
                      f"--cgroups_root={corral.cgroups_root}",
                      f"--resources=cpus:2;mem:1024;disk:1024;ports:[{base}-{base + 9}]", *extra], {})
    make.ports = (base, base + 9)
    return make


@pytest.fixture
def agent_process(corral, port_block):
    """agent_process(*extra): start `corral agent` on this test's dirs; stopped after the test."""
    base = port_block(10)
    started = []

    def start(*extra: str) -> AgentProcess:
        process = AgentProcess([f"--work_dir={corral.work_dir}", f"--runtime_dir={corral.runtime_dir}",
                                f"--cgroups_root={corral.cgroups_root}",
                                f"--resources=cpus:4;mem:2048;disk:1024;ports:[{base}-{base + 9}]", *extra])
        started.append(process)
        return process
    yield start
    for process in started:
        if process.proc.poll() is None:
            process.stop()
