"""cgroups/devices on cgroup2: the BPF_PROG_TYPE_CGROUP_DEVICE program, loaded into this host's
kernel and attached to a cgroup of the test's own in the cgroup2 hierarchy (the kernel runs a
cgroup2 device program on hybrid hosts too), with a child process in it that opens devices
read-only and makes nodes in a temporary directory."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from corral.cgroups import hierarchies
from corral.cgroups.fs.devices import Devices as V1Devices
from corral.cgroups.fs2.devices import Devices as V2Devices
from corral.cgroups.fs2.devices import device_program
from corral.isolators.devices import DEFAULT_RULES, Device

from tests.cgroupkit import outside_device


def lines(devices) -> list[str]:
    return [device.rule() for device in devices]


def set_or_skip(cgroup: V2Devices, rules: list[str]) -> None:
    try:
        cgroup.set_rules(rules)
    except OSError as e:
        pytest.skip(f"this kernel does not load cgroup device programs: {e}")


def probe_in(cgroup_dir: str, tmp: str, probes) -> list:
    """Fork a child, put it in `cgroup_dir`, run each probe there; the errno each got (0: allowed)."""
    ready_r, ready_w = os.pipe()
    result_r, result_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_w)
            os.read(ready_r, 1)
            answers = []
            for kind, path, extra in probes:
                try:
                    if kind == "open":
                        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
                    else:
                        node = os.path.join(tmp, path)
                        os.mknod(node, 0o600 | extra[0], os.makedev(*extra[1:]))
                        os.unlink(node)
                    answers.append("0")
                except OSError as e:
                    answers.append(str(e.errno))
            os.write(result_w, " ".join(answers).encode())
        finally:
            os._exit(0)
    os.close(ready_r)
    os.close(result_w)
    with open(os.path.join(cgroup_dir, "cgroup.procs"), "w") as f:
        f.write(str(pid))
    os.write(ready_w, b"g")
    os.close(ready_w)
    with os.fdopen(result_r) as f:
        answers = f.read().split()
    os.waitpid(pid, 0)
    return [int(a) for a in answers]


@pytest.fixture
def v2_cgroup(corral):
    if not hierarchies().v2:
        pytest.skip("no cgroup2 hierarchy on this host")
    path = os.path.join(hierarchies().v2, corral.cgroups_root, "devices")
    os.makedirs(path)
    yield path
    os.rmdir(path)          # the attached program goes with the cgroup


def test_program_allows_the_default_list_only(v2_cgroup, tmp_path):
    set_or_skip(V2Devices("devices", v2_cgroup), lines(DEFAULT_RULES))
    disk = os.stat("/").st_dev
    probes = [
        ("open", "/dev/null", None),
        ("open", "/dev/zero", None),
        ("open", outside_device()[0], None),                         # not in the list
        ("mknod", "disk", (stat.S_IFBLK, os.major(disk) or 254, os.minor(disk))),   # m on anything
        ("mknod", "char", (stat.S_IFCHR, 10, 237)),
    ]
    answers = probe_in(v2_cgroup, str(tmp_path), probes)
    assert answers == [0, 0, errno.EPERM, 0, 0], answers


def test_program_with_a_device_added_and_no_mknod(v2_cgroup, tmp_path):
    device, major, minor = outside_device()
    rule = f"c {major}:{minor}"
    set_or_skip(V2Devices("devices", v2_cgroup), ["c 1:3 rw", f"{rule} r"])
    probes = [
        ("open", "/dev/null", None),
        ("open", device, None),
        ("open", "/dev/zero", None),
        ("mknod", "null", (stat.S_IFCHR, 1, 3)),                     # rw, but not m
    ]
    assert probe_in(v2_cgroup, str(tmp_path), probes) == [0, 0, errno.EPERM, errno.EPERM]


def test_program_shape():
    """Six loads first, then per rule one jump per condition (three for access) and two to allow."""
    assert len(device_program([])) == 8 * 8
    assert len(device_program(lines([Device("a", None, None, "rwm")]))) == 8 * (6 + 2 + 2)
    assert len(device_program(["c 1:3 rw"])) == 8 * (6 + 1 + 3 + 1 + 1 + 2 + 2)


def test_v1_rules_allow_the_default_list_only(corral, tmp_path):
    """The v1 devices controller's rules (what hybrid and v1 hosts use)."""
    if "devices" not in hierarchies().v1:
        pytest.skip("no v1 devices controller on this host")
    path = os.path.join(hierarchies().v1["devices"], corral.cgroups_root, "devices")
    os.makedirs(path)
    try:
        V1Devices("devices", path).set_rules(lines(DEFAULT_RULES))
        with open(os.path.join(path, "devices.list")) as f:
            listed = f.read()
        assert "c 1:3 rwm" in listed and "a *:* rwm" not in listed
        disk = os.stat("/").st_dev
        probes = [("open", "/dev/null", None), ("open", outside_device()[0], None),
                  ("mknod", "disk", (stat.S_IFBLK, os.major(disk) or 254, os.minor(disk)))]
        assert probe_in(path, str(tmp_path), probes) == [0, errno.EPERM, 0]
    finally:
        os.rmdir(path)


def test_a_program_replaced_with_a_longer_list(v2_cgroup, tmp_path):
    """DevicesIsolator.allow's way on cgroup2: the new program takes the old one's place."""
    cgroup = V2Devices("devices", v2_cgroup)
    set_or_skip(cgroup, lines(DEFAULT_RULES))
    device, major, minor = outside_device()
    rule = f"c {major}:{minor}"
    assert probe_in(v2_cgroup, str(tmp_path), [("open", device, None)]) == [errno.EPERM]
    cgroup.add_rules([f"{rule} r"])
    assert probe_in(v2_cgroup, str(tmp_path), [("open", device, None)]) == [0]


def test_a_program_whose_fd_was_closed_is_loaded_again(v2_cgroup, tmp_path):
    """The agent's launch server closes the fds it inherits: a program loaded before that is
    loaded again, not attached through a dead (or reused) fd number (EBADF on cgroup2 hosts)."""
    from corral.cgroups.fs2 import devices
    cgroup = V2Devices("devices", v2_cgroup)
    set_or_skip(cgroup, ["c 1:3 rw"])
    os.close(devices._loaded[("c 1:3 rw",)])
    cgroup.set_rules(["c 1:3 rw"])
    assert probe_in(v2_cgroup, str(tmp_path), [("open", "/dev/null", None)]) == [0]
