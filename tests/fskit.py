"""ext4's TOPDIR flag (lsattr's T), as a user would look for it: whether a directory has it, and
a skip where the filesystem under the tests has no such flag."""

from __future__ import annotations

import array
import fcntl
import os
import subprocess

import pytest

_FS_IOC_GETFLAGS = 0x80086601
_FS_TOPDIR_FL = 0x00020000


def has_topdir(path) -> bool:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        flags = array.array("i", [0])
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, flags)
        return bool(flags[0] & _FS_TOPDIR_FL)
    finally:
        os.close(fd)


def need_topdir(tmp_path) -> None:
    """Skip unless chattr +T works in `tmp_path` (ext4 and its kin)."""
    probe = tmp_path / "topdir-probe"
    probe.mkdir()
    if subprocess.run(["chattr", "+T", str(probe)], capture_output=True).returncode != 0:
        pytest.skip("the filesystem under the tests has no FS_TOPDIR_FL")
