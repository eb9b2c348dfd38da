"""Fixtures shared by every test that needs dockerd, runc or threads (tests/docker, the external and
composing containerizers' tests): one private dockerd for the session (its own socket, data-root,
exec-root, pidfile and cgroup parent; no iptables, no bridge), the busybox image loaded into it,
a busybox root filesystem, and checks that nothing outlives a test or the session. tests/conftest.py
makes them every test's; the session's dockerd starts only for a test that asks for it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import uuid
from pathlib import Path

import pytest

from tests.private_dockerd import BUSYBOX_IMAGE, PrivateDockerd
from tests.threads import only_thread

from corral.containerizers.docker import LABEL_ID
from corral.cgroups import remove_root
from corral import linux


def _links() -> set[str]:
    """The interfaces dockerd makes (veth pairs, bridges) and ours (crl*): another session's
    interfaces on the host must not fail these tests."""
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    names = {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}
    return {name for name in names if name.startswith(("veth", "br-", "docker", "crl"))}


def _mounts_under(top: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(top)]


@pytest.fixture(scope="session")
def dockerd():
    """A private dockerd with the busybox image; stopped by its pid and wiped after the session."""
    for tool, package in (("dockerd", "docker.io"), ("docker", "docker.io"), ("busybox", "busybox-static")):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian: {package})")
    links_before = _links()
    # A short path: the daemon's socket path must fit in sun_path (108 bytes).
    top = tempfile.mkdtemp(prefix="corral-dockerd-", dir="/tmp")
    daemon = PrivateDockerd(top, cgroup_parent=f"corral-test-docker-{uuid.uuid4().hex[:8]}")
    daemon.start()
    try:
        daemon.load_busybox()
        yield daemon
    finally:
        daemon.stop()
        leftovers = []
        for mount in reversed(_mounts_under(top)):
            try:
                linux.umount2(mount, linux.MNT_DETACH)     # dockerd leaves exec-root/netns/default mounted
            except OSError as e:
                leftovers.append(f"mount {mount}: {e}")
        # dockerd leaves its (empty) cgroup parent behind, the systemd hierarchy's too
        leftovers += [f"cgroup {cgroup} (not empty)" for cgroup in remove_root(daemon.cgroup_parent)]
        leftovers += [f"network interface {link}" for link in _links() - links_before]
        if not leftovers:
            daemon.remove()
        assert not leftovers, f"the private dockerd left these behind: {leftovers}"


@pytest.fixture
def no_threads_left():
    """The Mesos containerizer's launcher refuses to fork from a process with threads, and the
    tests after these run in this process: every thread a test started must be gone after it.
    (Asked for by every test whose containerizers run on threads: docker, external, composing.)"""
    yield
    assert only_thread(), f"threads left: {threading.enumerate()}"


@pytest.fixture
def rootfs(tmp_path):
    """A busybox root filesystem (ContainerConfig.rootfs), as the runc example takes it."""
    for tool, package in (("runc", "runc"), ("busybox", "busybox-static")):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian: {package})")
    root = tmp_path / "rootfs"
    for d in ("bin", "proc", "dev", "sys", "tmp", "mnt/mesos/sandbox"):
        (root / d).mkdir(parents=True)
    shutil.copy("/bin/busybox", root / "bin" / "busybox")
    for applet in ("sh", "sleep", "echo", "cat", "true"):
        (root / "bin" / applet).symlink_to("busybox")
    return str(root)


@pytest.fixture
def docker_env(dockerd, tmp_path, request):
    """A work dir and runtime dir of the test's own; fails the test if it leaves a container behind.
    Parametrized indirectly with "sdk" or "socket", it picks the containerizers' transport (the
    docker SDK, the agent's; plain HTTP on the socket, the CLI's); the SDK otherwise."""
    env = DockerEnv(dockerd, tmp_path, sdk=getattr(request, "param", "sdk") == "sdk")
    yield env
    left = dockerd.docker("ps", "-aq", "--filter", f"label={LABEL_ID}").stdout.split()
    if left:
        dockerd.docker("rm", "-f", *left)
    assert not left, f"the test left docker containers behind: {left}"


class DockerEnv:
    image = {"type": "DOCKER", "name": BUSYBOX_IMAGE}

    def __init__(self, dockerd: PrivateDockerd, tmp: Path, sdk: bool = True):
        self.dockerd = dockerd
        self.sdk = sdk
        self.work_dir = str(tmp / "work")
        self.runtime_dir = str(tmp / "run")

    def sync(self, **kwargs):
        from corral.containerizers.docker import SyncDockerContainerizer
        kwargs.setdefault("only", True)
        kwargs.setdefault("sdk", self.sdk)
        return SyncDockerContainerizer(self.work_dir, self.runtime_dir, socket=self.dockerd.url, **kwargs)

    def async_(self, **kwargs):
        from corral.containerizers.docker import DockerContainerizer
        kwargs.setdefault("only", True)
        kwargs.setdefault("sdk", self.sdk)
        return DockerContainerizer(self.work_dir, self.runtime_dir, socket=self.dockerd.url, **kwargs)

    def config(self, *argv: str, **kwargs):
        from corral.types import ContainerConfig
        kwargs.setdefault("image", self.image)
        return ContainerConfig(argv=list(argv), **kwargs)
