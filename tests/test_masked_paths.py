"""linux/masked_paths hands init only the paths this kernel has (looked up once, in a proc and a
sysfs mounted nowhere): the container ends up as masked as with runc's whole list, and finding
out leaves no mount behind."""

from __future__ import annotations

import pytest

from corral.isolators.masked_paths import MASKED, READONLY, on_this_kernel
from tests.test_confinement import rootfs, run  # noqa: F401 - the busybox rootfs fixture


def test_paths_this_kernel_lacks_are_left_out_and_no_mount_stays():
    before = open("/proc/self/mountinfo").read()
    kept = on_this_kernel(("/proc/keys", "/proc/sys", "/proc/no-such-entry", "/sys/kernel", "/sys/no/such",
                           "/dev/not-under-proc-or-sys"))
    assert kept == ("/proc/keys", "/proc/sys", "/sys/kernel", "/dev/not-under-proc-or-sys")
    assert open("/proc/self/mountinfo").read() == before


@pytest.mark.parametrize("with_rootfs", [False, True], ids=["host-fs", "rootfs"])
def test_every_path_of_runcs_list_the_container_has_is_masked_or_read_only(corral, rootfs, with_rootfs):  # noqa: F811
    paths = MASKED + READONLY
    # For each path: whether it exists in the container, and whether a mount covers it there.
    script = ("for p in " + " ".join(paths) + "; do if [ -e $p ]; then echo $p yes; else echo $p no; fi; done; "
              "cat /proc/self/mountinfo")
    result = run(corral, script, *(("--rootfs", str(rootfs)) if with_rootfs else ()))
    assert result.returncode == 0, result
    lines = result.stdout.splitlines()
    exists = dict(line.split() for line in lines[:len(paths)])
    mount_points = {line.split()[4] for line in lines[len(paths):]}
    kept = on_this_kernel(paths)
    for path in paths:
        if path in kept:
            assert path in mount_points, f"{path} is neither masked nor read-only in the container"
        else:
            assert exists[path] == "no", f"{path} was left out but the container has it"
