"""Shared fixtures: every test gets its own cgroups root, work and runtime dirs, and fails if it
leaves a cgroup, a process, a supervisor or a mount behind."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from corral import linux
from tests.dockerd import docker_env, dockerd, no_threads_left, rootfs  # noqa: F401 - shared fixtures

CORRAL = str(Path(sys.executable).with_name("corral"))


def pytest_configure(config):
    if os.geteuid() != 0:
        pytest.exit("corral's tests need root: they use real cgroups and namespaces", returncode=2)


class Corral:
    """One test's corral: a CLI runner and containerizers bound to private dirs and cgroups root."""

    executable = CORRAL

    def __init__(self, tmp: Path):
        self.cgroups_root = f"corral-test-{uuid.uuid4().hex[:10]}"
        self.work_dir = str(tmp / "work")
        self.runtime_dir = str(tmp / "run")
        self.env = dict(os.environ, CORRAL_WORK_DIR=self.work_dir, CORRAL_RUNTIME_DIR=self.runtime_dir,
                        CORRAL_CGROUPS_ROOT=self.cgroups_root)

    def run(self, *args: str, timeout: float = 60, check: bool = False, **kwargs) -> subprocess.CompletedProcess:
        result = subprocess.run([CORRAL, *args], env=self.env, capture_output=True, text=True,
                                timeout=timeout, **kwargs)
        if check and result.returncode != 0:
            raise AssertionError(f"corral {' '.join(args)} exited {result.returncode}: {result.stderr}")
        return result

    def popen(self, *args: str, **kwargs) -> subprocess.Popen:
        return subprocess.Popen([CORRAL, *args], env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, **kwargs)

    def sync(self, **kwargs):
        from corral.containerizers.mesos.sync import SyncMesosContainerizer
        return SyncMesosContainerizer(self.work_dir, self.runtime_dir, self.cgroups_root, **kwargs)

    def cgroup_dirs(self) -> list[str]:
        from corral.cgroups import root_dirs
        return root_dirs(self.cgroups_root)

    def leftovers(self) -> list[str]:
        """What a test left on the host: containers' processes, live supervisors, mounts."""
        found = []
        for top in self.cgroup_dirs():
            for dirpath, _dirs, _files in os.walk(top):
                with open(os.path.join(dirpath, "cgroup.procs")) as f:
                    pids = f.read().split()
                if pids:
                    found.append(f"processes {pids} in {dirpath}")
        containers = Path(self.runtime_dir, "containers")
        for pids_file in containers.glob("*/pids.json") if containers.exists() else ():
            sup = json.loads(pids_file.read_text()).get("supervisor", {})
            if linux.is_same_process(sup.get("pid"), sup.get("start")):
                found.append(f"supervisor {sup['pid']} of {pids_file.parent.name}")
        with open("/proc/self/mountinfo") as f:
            for line in f:
                mount_point = line.split()[4]
                if mount_point.startswith((self.work_dir, self.runtime_dir)):
                    found.append(f"mount {mount_point}")
        return found

    def cleanup(self) -> list[str]:
        """Destroy whatever is left through corral itself, then remove the cgroups root."""
        from corral.cgroups import remove_root
        sync = self.sync()
        for container_id in sync.containers():
            try:
                sync.destroy(container_id, remove_sandbox=True)
            except Exception:  # noqa: BLE001 - a broken container must not hide the others
                pass
        sync.recover()
        self.kill_strays()
        return remove_root(self.cgroups_root)

    def kill_strays(self, timeout: float = 5.0) -> None:
        """SIGKILL what a failed test left in this test's own cgroups (a container launched with
        another tracking than the default, say), thawing frozen ones first, and wait until empty."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left = False
            for top in self.cgroup_dirs():
                for dirpath, _dirs, files in os.walk(top):
                    if "freezer.state" in files:
                        with open(os.path.join(dirpath, "freezer.state"), "w") as f:
                            f.write("THAWED")
                    with open(os.path.join(dirpath, "cgroup.procs")) as f:
                        for pid in f.read().split():
                            left = True
                            with contextlib.suppress(ProcessLookupError):
                                os.kill(int(pid), signal.SIGKILL)
            if not left:
                return
            time.sleep(0.05)


@pytest.fixture
def corral(tmp_path):
    env = Corral(tmp_path)
    yield env
    leaks = env.leftovers()
    stuck = env.cleanup()
    assert not leaks, f"the test left these behind: {leaks}"
    assert not stuck, f"cgroups that could not be removed: {stuck}"
    assert not env.cgroup_dirs(), f"cgroups left: {env.cgroup_dirs()}"
