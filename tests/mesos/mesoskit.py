"""A real Apache Mesos 1.11.1 for corral's tests and benchmark: its build from ../shared/mesos
(beside the checkout) unpacked once into a cache dir, masters on loopback, mesos-execute.

A module of its own (not conftest.py) so that bench/mesos.py can use it too. `home()` raises
Missing, saying what to do, where the build or its libraries are absent."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("CORRAL_MESOS_CACHE", "/var/cache/corral-mesos"))
PACKAGES = ("zstd libapr1 libaprutil1 libarchive13 libcurl4 libgrpc++1.51 libleveldb1d libprotobuf32 libsasl2-2 "
            "libsvn1 libunwind8 libzookeeper-mt2 libabsl20220623")


class Missing(Exception):
    """No Mesos to run here; the message says why and what to do."""


def shared() -> Path:
    """../shared/mesos beside the checkout: beside the main checkout too, for a git worktree
    (whose .git file names the main checkout's .git/worktrees/NAME)."""
    found = REPO.parent / "shared" / "mesos"
    dot_git = REPO / ".git"
    if not found.exists() and dot_git.is_file():
        gitdir = Path(dot_git.read_text().partition("gitdir:")[2].strip())
        if gitdir.parent.name == "worktrees":
            found = gitdir.parent.parent.parent.parent / "shared" / "mesos"
    return found


def home() -> Path:
    """The unpacked mesos-1.11.1 directory (bin/, libexec/, lib/), unpacked on first use."""
    tarball = shared() / "mesos-1.11.1-debian12-amd64.tar.zst"
    if not tarball.exists():
        raise Missing(f"no Mesos build at {tarball}: a real master is needed (README.md: getting a master)")
    unpacked = CACHE / "mesos-1.11.1"
    if not (unpacked / "bin" / "mesos-master").exists():
        if shutil.which("zstd") is None:
            raise Missing(f"zstd is missing: apt-get install {PACKAGES}")
        CACHE.mkdir(parents=True, exist_ok=True)
        with open(CACHE / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)            # one unpacking at a time, whoever else tests here
            if not (unpacked / "bin" / "mesos-master").exists():
                staging = tempfile.mkdtemp(dir=CACHE)
                subprocess.run(["tar", "-xf", str(tarball), "-C", staging], check=True)
                os.rename(os.path.join(staging, "mesos-1.11.1"), unpacked)
                os.rmdir(staging)
    probe = subprocess.run([str(unpacked / "bin" / "mesos-master"), "--version"], capture_output=True, text=True)
    if probe.returncode != 0:
        raise Missing(f"mesos-master does not run here ({probe.stderr.strip()[:200]}): apt-get install {PACKAGES}")
    return unpacked


def environment() -> dict:
    return dict(os.environ, LIBPROCESS_IP="127.0.0.1")


class Master:
    """A mesos-master on loopback with an in-memory registry, and its /master/state."""

    def __init__(self, home: Path, work_dir: Path, port: int, *flags: str):
        self.home, self.work_dir, self.port = home, work_dir, port
        self.log_path = work_dir.parent / f"master-{port}.log"
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([str(home / "bin" / "mesos-master"), "--ip=127.0.0.1", f"--port={port}",
                                      f"--work_dir={work_dir}", "--registry=in_memory", "--quiet", *flags],
                                     env=environment(), stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.state()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the master did not start: {self.log_text()[-2000:]}") from None
                time.sleep(0.05)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def state(self) -> dict:
        with urllib.request.urlopen(f"http://{self.address}/master/state", timeout=10) as r:
            return json.load(r)

    def agents(self) -> list[dict]:
        return self.state()["slaves"]

    def log_text(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

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
                              env=environment(), capture_output=True, text=True, timeout=timeout)

    def execute_async(self, *args: str) -> subprocess.Popen:
        """mesos-execute started; its output (stdout and stderr) line by line on .stdout."""
        return subprocess.Popen([str(self.home / "bin" / "mesos-execute"), f"--master={self.address}", *args],
                                env=environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def updates(output: str) -> list[str]:
    """The states mesos-execute printed, in order: ["TASK_STARTING", "TASK_RUNNING", ...]."""
    return [line.split()[3] for line in output.splitlines() if line.startswith("Received status update ")]


def until(predicate, timeout: float = 30.0, what: str = ""):
    """Poll `predicate` until it returns something true, and return that; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout}s: {what or predicate}")
        time.sleep(0.05)


def joined(master: Master, agent_port: int) -> dict | None:
    """The master's record of the active agent on `agent_port`, if it has one."""
    return next((a for a in master.agents() if a["port"] == agent_port and a["active"]), None)


def agent_work_dir(agent) -> str:
    """An AgentProcess's --work_dir."""
    return next(f.split("=", 1)[1] for f in agent.proc.args if f.startswith("--work_dir="))


def acknowledged(work_dir: str) -> int:
    """How many updates the agent has recorded as acknowledged, over all its tasks."""
    import glob
    import struct

    from corral.agent import messages
    count = 0
    for path in glob.glob(f"{work_dir}/meta/frameworks/*/runs/*/task.updates"):
        raw, offset = open(path, "rb").read(), 0
        while offset + 4 <= len(raw):
            (size,) = struct.unpack_from("<I", raw, offset)
            record = messages.StatusUpdateRecord.FromString(raw[offset + 4:offset + 4 + size])
            count += record.type == messages.ENUMS["RecordType"]["ACK"]
            offset += 4 + size
    return count
