"""Fixtures for the tests against a real Apache Mesos 1.11.1 master: its build from
../shared/mesos (next to the repository) unpacked once into a cache dir, a master per test on
a free loopback port with its own work dir, mesos-execute as the framework, and corral's agent
joined to it. Without ../shared/mesos, or without the libraries its binaries need, these tests
skip and say why (README.md: getting a master)."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "agent"))     # agentkit: AgentProcess, free ports

from agentkit import AgentProcess, free_port_block  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _shared() -> Path:
    """../shared/mesos beside the checkout: beside the main checkout too, for a git worktree
    (whose .git file names the main checkout's .git/worktrees/NAME)."""
    found = REPO.parent / "shared" / "mesos"
    dot_git = REPO / ".git"
    if not found.exists() and dot_git.is_file():
        gitdir = Path(dot_git.read_text().partition("gitdir:")[2].strip())
        if gitdir.parent.name == "worktrees":
            found = gitdir.parent.parent.parent.parent / "shared" / "mesos"
    return found


TARBALL = _shared() / "mesos-1.11.1-debian12-amd64.tar.zst"
CACHE = Path(os.environ.get("CORRAL_MESOS_CACHE", "/var/cache/corral-mesos"))
PACKAGES = ("zstd libapr1 libaprutil1 libarchive13 libcurl4 libgrpc++1.51 libleveldb1d libprotobuf32 libsasl2-2 "
            "libsvn1 libunwind8 libzookeeper-mt2 libabsl20220623")


@pytest.fixture(scope="session")
def mesos_home() -> Path:
    """The unpacked mesos-1.11.1 directory (bin/, libexec/, lib/)."""
    if not TARBALL.exists():
        pytest.skip(f"no Mesos build at {TARBALL}: a real master is needed (README.md: getting a master)")
    home = CACHE / "mesos-1.11.1"
    if not (home / "bin" / "mesos-master").exists():
        if shutil.which("zstd") is None:
            pytest.skip(f"zstd is missing: apt-get install {PACKAGES}")
        CACHE.mkdir(parents=True, exist_ok=True)
        with open(CACHE / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)            # one unpacking at a time, whoever else tests here
            if not (home / "bin" / "mesos-master").exists():
                staging = tempfile.mkdtemp(dir=CACHE)
                subprocess.run(["tar", "-xf", str(TARBALL), "-C", staging], check=True)
                os.rename(os.path.join(staging, "mesos-1.11.1"), home)
                os.rmdir(staging)
    probe = subprocess.run([str(home / "bin" / "mesos-master"), "--version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"mesos-master does not run here ({probe.stderr.strip()[:200]}): "
                    f"apt-get install {PACKAGES}")
    return home


def _environment() -> dict:
    return dict(os.environ, LIBPROCESS_IP="127.0.0.1")


class Master:
    """A mesos-master on loopback with an in-memory registry, and its /master/state."""

    def __init__(self, home: Path, work_dir: Path, port: int | None = None):
        self.home, self.work_dir = home, work_dir
        self.port = port or free_port_block(1)
        self.log = open(work_dir.parent / f"master-{self.port}.log", "ab")
        self.proc = subprocess.Popen([str(home / "bin" / "mesos-master"), "--ip=127.0.0.1", f"--port={self.port}",
                                      f"--work_dir={work_dir}", "--registry=in_memory", "--quiet"],
                                     env=_environment(), stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.state()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the master did not start: {self.log_text()[-2000:]}")
                time.sleep(0.05)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def state(self) -> dict:
        import json
        import urllib.request
        with urllib.request.urlopen(f"http://{self.address}/master/state", timeout=10) as r:
            return json.load(r)

    def agents(self) -> list[dict]:
        return self.state()["slaves"]

    def log_text(self) -> str:
        self.log.flush()
        return (self.work_dir.parent / f"master-{self.port}.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def execute(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """mesos-execute against this master: the framework a user would run."""
        return subprocess.run([str(self.home / "bin" / "mesos-execute"), f"--master={self.address}", *args],
                              env=_environment(), capture_output=True, text=True, timeout=timeout)

    def execute_async(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([str(self.home / "bin" / "mesos-execute"), f"--master={self.address}", *args],
                                env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def updates(output: str) -> list[str]:
    """The states mesos-execute printed, in order: ["TASK_STARTING", "TASK_RUNNING", ...]."""
    return [line.split()[3] for line in output.splitlines() if line.startswith("Received status update ")]


def until(predicate, timeout: float = 30.0, what: str = ""):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout}s: {what or predicate}")
        time.sleep(0.05)


@pytest.fixture
def mesos_master(mesos_home, tmp_path):
    """mesos_master(port=None): start a master (again, on the same port and dirs); all stopped after the test."""
    started = []

    def start(port: int | None = None) -> Master:
        work = tmp_path / "master"
        work.mkdir(exist_ok=True)
        master = Master(mesos_home, work, port)
        started.append(master)
        return master
    yield start
    for master in started:
        master.stop()


@pytest.fixture
def joined_agent(corral, port_block_10):
    """joined_agent(master, *extra): corral's agent with --master, on this test's dirs; stopped after."""
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


@pytest.fixture
def port_block_10():
    return free_port_block(10)
