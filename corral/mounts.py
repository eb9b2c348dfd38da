"""A mount as data, and the one function that makes it: the provisioner describes a container's
rootfs mount with it, isolators describe theirs, and the container's init makes them all."""

from __future__ import annotations

import os

from . import linux
from .record import Record


class Mount(Record):
    """mount(source, target, fstype, flags, data); for `readonly` a read-only bind remount after;
    made from the working directory `cwd` when set (an overlay with relative lowerdirs, which
    keep a tall image's options within mount(2)'s one page)."""
    source: str | None
    target: str
    fstype: str | None = None
    flags: int = 0
    data: str | None = None
    readonly: bool = False
    cwd: str | None = None


def make_mount(m: Mount, target: str | None = None) -> None:
    """Make `m`, at `target` if given (a host path resolved from m.target), else at m.target.
    Only ever call it in a private mount namespace."""
    target = target or m.target
    if m.cwd:
        back = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.chdir(m.cwd)
            linux.mount(m.source, target, m.fstype, m.flags, m.data)
        finally:
            os.fchdir(back)
            os.close(back)
    else:
        linux.mount(m.source, target, m.fstype, m.flags, m.data)
    if m.readonly:
        linux.mount(None, target, None, linux.MS_REMOUNT | linux.MS_BIND | linux.MS_RDONLY
                    | (m.flags & (linux.MS_REC | linux.MS_NODEV | linux.MS_NOSUID | linux.MS_NOEXEC)))
