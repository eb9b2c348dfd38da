"""The cgroups layer on this host's real hierarchies: v1 controllers and the cgroup2 mount."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from corral.cgroups import CgroupsUnavailable, _read_mounts, cgroup_for, hierarchies
from corral.cpu import quota_for, shares_for, weight_for


def test_detects_this_hosts_hierarchies():
    h = hierarchies()
    assert h.mode in ("v1", "v2", "hybrid")
    with open("/proc/self/mountinfo") as f:
        mounts = f.read()
    assert (" - cgroup2 " in mounts) == (h.v2 is not None)
    assert (" - cgroup " in mounts) == bool(h.v1)
    for controller, mount_point in h.v1.items():
        assert os.path.exists(os.path.join(mount_point, "cgroup.procs")), controller


def test_mode_from_mountinfo(tmp_path):
    line = "30 25 0:26 / {mp} rw,relatime shared:5 - {fs} {fs} rw,{opts}\n"
    hybrid = tmp_path / "hybrid"
    hybrid.write_text(line.format(mp="/sys/fs/cgroup/memory", fs="cgroup", opts="memory")
                      + line.format(mp="/sys/fs/cgroup/cpu,cpuacct", fs="cgroup", opts="cpu,cpuacct")
                      + line.format(mp="/sys/fs/cgroup/unified", fs="cgroup2", opts="nsdelegate"))
    found = _read_mounts(str(hybrid))
    assert found.mode == "hybrid"
    assert found.v1 == {"memory": "/sys/fs/cgroup/memory", "cpu": "/sys/fs/cgroup/cpu,cpuacct",
                        "cpuacct": "/sys/fs/cgroup/cpu,cpuacct"}
    pure = tmp_path / "v2"
    pure.write_text(line.format(mp="/sys/fs/cgroup", fs="cgroup2", opts="nsdelegate"))
    assert _read_mounts(str(pure)).mode == "v2"


def test_mesos_cpu_arithmetic():
    assert shares_for(0.001) == 2 and shares_for(1) == 1024 and shares_for(2.5) == 2560
    assert quota_for(0.5) == 50_000 and quota_for(0.0001) == 1_000
    # cgroup2: 100 per cpu (Mesos's cgroups2 mapping), within cpu.weight's [1, 10000].
    assert weight_for(1) == 100 and weight_for(0.25) == 25 and weight_for(0.29) == 29
    assert weight_for(0.001) == 1 and weight_for(500) == 10000


@pytest.fixture
def v2_cgroup(corral):
    if not hierarchies().v2:
        pytest.skip("no cgroup2 mount on this host")
    cgroup = cgroup_for("unified", f"{corral.cgroups_root}/probe")
    cgroup.create()
    yield cgroup
    cgroup.kill()
    cgroup.remove()
    os.rmdir(os.path.dirname(cgroup.path))


def test_v2_procs_events_freeze_and_kill(v2_cgroup):
    """The cgroup2 core files, on the real mount: cgroup.procs, cgroup.events, cgroup.freeze, cgroup.kill."""
    assert not v2_cgroup.populated()
    # The shell forks only once it is in the cgroup, so nothing escapes it.
    child = subprocess.Popen(["sh", "-c", "read go; sleep 1000 & sleep 1000 & wait"], stdin=subprocess.PIPE)
    try:
        v2_cgroup.attach(child.pid)
        child.stdin.write(b"go\n")
        child.stdin.close()
        # Children forked after the move land in the cgroup too.
        deadline = time.monotonic() + 5
        while len(v2_cgroup.procs()) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert child.pid in v2_cgroup.procs() and len(v2_cgroup.procs()) == 3
        assert v2_cgroup.populated()

        v2_cgroup.freeze(True)
        assert v2_cgroup.read_keyed("cgroup.events")["frozen"] == 1
        v2_cgroup.freeze(False)
        assert v2_cgroup.read_keyed("cgroup.events")["frozen"] == 0

        v2_cgroup.kill()
        assert child.wait(timeout=5) == -signal.SIGKILL
        deadline = time.monotonic() + 5
        while v2_cgroup.populated() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert v2_cgroup.procs() == [] and not v2_cgroup.populated()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_memory_limit_in_either_version(corral):
    """The memory controller's limit, through v1's memory.limit_in_bytes or cgroup2's memory.max."""
    memory = cgroup_for("memory", f"{corral.cgroups_root}/probe")
    memory.create()
    try:
        memory.set_limit(64 * 1024 * 1024)
        limit_file = "memory.limit_in_bytes" if memory.version == 1 else "memory.max"
        assert int(memory.read(limit_file)) == 64 * 1024 * 1024
        assert memory.limit() == 64 * 1024 * 1024
        assert memory.usage().limit == 64 * 1024 * 1024 and memory.oom_kills() == 0
    finally:
        memory.remove()


def test_fork_into_cgroup_starts_the_child_there(v2_cgroup):
    """clone3(CLONE_INTO_CGROUP): the child is in the cgroup from its first instruction, with no
    cgroup.procs write (the launcher's way on a pure cgroup2 host)."""
    from corral import linux
    from corral.cgroups import hierarchies
    fd = os.open(v2_cgroup.path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    r, w = os.pipe()
    try:
        pid = linux.fork_into_cgroup(fd)
        if pid is None:
            pytest.skip("this kernel lacks clone3 with CLONE_INTO_CGROUP (Linux 5.7+)")
        if pid == 0:
            with open("/proc/self/cgroup") as f:
                os.write(w, f.read().encode())
            os._exit(0)
        os.close(w)
        with os.fdopen(r) as f:
            seen = f.read()
        assert os.waitpid(pid, 0)[1] == 0
    finally:
        os.close(fd)
    relative = os.path.relpath(v2_cgroup.path, hierarchies().v2)
    assert f"0::/{relative}\n" in seen


def test_pids_limit_in_either_version(corral):
    """pids.max and pids.current, the same files on v1 and cgroup2."""
    try:
        pids = cgroup_for("pids", f"{corral.cgroups_root}/probe")
    except CgroupsUnavailable:
        pytest.skip("no pids controller on this host")
    pids.create()
    try:
        assert pids.max() is None and pids.current() == 0
        pids.set_max(5)
        assert pids.max() == 5 and pids.read("pids.max").strip() == "5"
        pids.set_max(None)
        assert pids.max() is None
    finally:
        pids.remove()


def test_device_rules_in_either_version(corral):
    """set_rules allows exactly the rules given, add_rules more: v1 writes devices.deny and
    devices.allow (read back in devices.list); cgroup2 attaches a BPF device program (whose
    effect tests/test_devices_program.py probes)."""
    devices = cgroup_for("devices", f"{corral.cgroups_root}/probe")
    devices.create()
    try:
        devices.set_rules(["c 1:3 rwm"])
        devices.add_rules(["c 1:5 r"])
        if devices.version == 1:
            assert devices.rules() == ["c 1:3 rwm", "c 1:5 r"]
    finally:
        devices.remove()
