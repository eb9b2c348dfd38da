"""Fixtures for the tests against a real Apache Mesos 1.11.1 master (tests/mesos/mesoskit.py):
a master per test on a free loopback port with its own work dir, and corral's agent joined to
it. Without ../shared/mesos, or without the libraries its binaries need, these tests skip and
say why (README.md: getting a master)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.agent.agentkit import AgentProcess, free_port_block
from tests.mesos.mesoskit import Master, Missing, home


@pytest.fixture(scope="session")
def mesos_home() -> Path:
    try:
        return home()
    except Missing as e:
        pytest.skip(str(e))


@pytest.fixture
def mesos_master(mesos_home, tmp_path):
    """mesos_master(port=None): start a master (again, on the same port and dirs); all stopped after the test."""
    started = []

    def start(port: int | None = None) -> Master:
        work = tmp_path / "master"
        work.mkdir(exist_ok=True)
        master = Master(mesos_home, work, port or free_port_block(1))
        started.append(master)
        return master
    yield start
    for master in started:
        master.stop()


@pytest.fixture
def port_block_10():
    return free_port_block(10)


@pytest.fixture
def joined_agent(corral, port_block_10):
    """joined_agent(master, *extra, port=None): corral's agent with --master, on this test's dirs; stopped after."""
    base = port_block_10
    started = []

    def start(master: Master, *extra: str, port: int | None = None) -> AgentProcess:
        """`port`: the port of the agent this one restarts."""
        process = AgentProcess([f"--master={master.address}", f"--work_dir={corral.work_dir}",
                                f"--runtime_dir={corral.runtime_dir}", f"--cgroups_root={corral.cgroups_root}",
                                f"--resources=cpus:4;mem:2048;disk:1024;ports:[{base}-{base + 9}]", *extra],
                               port=port)
        started.append(process)
        return process
    yield start
    for process in started:
        if process.proc.poll() is None:
            process.stop()
