"""linux/masked_paths hands init only the paths this kernel has (looked up once, in a proc and a
sysfs mounted nowhere): the container ends up as masked as with runc's whole list, and finding
out leaves no mount behind."""

from __future__ import annotations

import os

import pytest

from corral.isolators.masked_paths import MASKED, READONLY, on_this_kernel
from tests.childkit import in_child
from tests.test_confinement import rootfs, run  # noqa: F401 - the busybox rootfs fixture


def test_paths_this_kernel_lacks_are_left_out_and_no_mount_stays():
    before = open("/proc/self/mountinfo").read()
    kept = on_this_kernel(("/proc/keys", "/proc/sys", "/proc/no-such-entry", "/sys/kernel", "/sys/no/such",
                           "/dev/not-under-proc-or-sys"))
    assert kept == {"/proc/keys": False, "/proc/sys": True, "/sys/kernel": True, "/dev/not-under-proc-or-sys": None}
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


def test_a_mask_of_unknown_kind_finds_out_itself():
    """Where the fresh instances could not say (an old kernel), init binds /dev/null and, over
    a directory, where that bind fails, mounts the empty tmpfs; a missing path is skipped.
    In a child's private mount namespace, gone with it."""
    from corral import confine, linux

    def mask_and_look():
        linux.unshare(linux.CLONE_NEWNS)
        linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
        for path in ("/sys/firmware", "/proc/keys", "/proc/no-such-entry"):
            confine.mask(path)
        fstypes = {line.split()[4]: line.split(" - ")[1].split()[0] for line in open("/proc/self/mountinfo")}
        return repr((os.listdir("/sys/firmware"), fstypes.get("/sys/firmware"),
                     os.stat("/proc/keys").st_rdev == os.stat("/dev/null").st_rdev))
    answer = in_child(mask_and_look)
    assert answer == repr(([], "tmpfs", True)), answer
