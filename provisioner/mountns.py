"""Making a ProvisionInfo's mounts, only ever inside a private mount namespace.

The containerizer makes them in the container's own namespace before pivot_root; this module
does the same for a child process (tests, benchmarks, inspection): the mounts exist only in
that child's namespace and vanish with it, so nothing is ever left mounted on the host.
"""

from __future__ import annotations

import os
import subprocess

from corral import linux
from corral.mounts import make_mount

from .backends import ProvisionInfo


def mount_all(info: ProvisionInfo) -> None:
    """Make the mounts. Call it only in a mount namespace of the container's own, made private."""
    for m in info.mounts:
        make_mount(m)


def private_namespace() -> None:
    """Enter a new mount namespace whose mounts and unmounts never propagate to the host."""
    linux.unshare(linux.CLONE_NEWNS)
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)


def run(info: ProvisionInfo, argv: list[str], chroot: bool = False, **kwargs) -> subprocess.CompletedProcess:
    """Run argv in a new private mount namespace holding the rootfs's mounts (chrooted into it
    if asked; cwd is the rootfs). subprocess.run's keyword arguments pass through."""
    def setup():
        private_namespace()
        mount_all(info)
        if chroot:
            os.chroot(info.rootfs)
        os.chdir("/" if chroot else info.rootfs)

    return subprocess.run(argv, preexec_fn=setup, **kwargs)
