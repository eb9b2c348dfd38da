"""What init does to give the container its own root filesystem: mounts, then pivot_root.

Runs in init, in the container's private mount namespace (made rprivate first, so nothing
propagates to the host), between unshare and the task's exec. Every target is resolved inside
the new root, symlinks included, so an image cannot point a mount at the host's files.
"""

from __future__ import annotations

import errno
import os
import stat

from corral import linux
from corral.mounts import make_mount


def resolve_in_root(root: str, path: str) -> str:
    """The host path of `path` inside `root`, following symlinks as if `root` were `/`.

    Components that do not exist yet are appended as they are; '..' stops at the root.
    """
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        host = os.path.join(root, *resolved, part)
        try:
            st = os.lstat(host)
        except FileNotFoundError:
            resolved.append(part)
            resolved += [p for p in parts if p != ".."]   # the rest does not exist either
            break
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > 40:
                raise OSError(errno.ELOOP, f"too many symlinks resolving {path} in the container")
            target = os.readlink(host)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)


def _make_target(path: str, directory: bool) -> None:
    if os.path.lexists(path):
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if directory:
        os.mkdir(path, 0o755)
    else:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))


def enter_rootfs(rootfs: str, rootfs_mount, mounts, symlinks: dict[str, str]) -> None:
    if rootfs_mount is not None:
        make_mount(rootfs_mount, rootfs)
    else:
        linux.mount(rootfs, rootfs, None, linux.MS_BIND | linux.MS_REC)   # pivot_root wants a mount point
    for m in mounts:
        target = resolve_in_root(rootfs, m.target)
        try:
            _make_target(target, directory=m.fstype is not None or os.path.isdir(m.source))
            make_mount(m, target)
        except OSError as e:
            raise OSError(e.errno,
                          f"cannot mount {m.source or m.fstype} at {m.target}: {os.strerror(e.errno)}") from None
    for link, points_to in symlinks.items():
        try:
            os.symlink(points_to, resolve_in_root(rootfs, link))
        except FileExistsError:
            pass
        except OSError as e:
            raise OSError(e.errno, f"cannot make the symlink {link}: {os.strerror(e.errno)}") from None
    # pivot_root(".", ".") stacks the old root under the new one; detaching it leaves nothing
    # of the host's filesystem reachable (the trick runc uses, with no put_old directory).
    os.chdir(rootfs)
    linux.pivot_root(".", ".")
    linux.umount2(".", linux.MNT_DETACH)
    os.chdir("/")
