"""Rootfs backends: how an image's layers become one container's root filesystem.

overlay  the layers as lowerdirs under a per-container upperdir: nothing is copied.
copy     the layers copied in order into a per-container directory, whiteouts applied.
bind     a single-layer image's layer, bind-mounted read-only.

No backend mounts anything on the host: overlay and bind return the mount to make, and the
caller makes it inside the container's private mount namespace (mountns.py does it for tests).
The mounts are nodev: an image brings no device nodes (extraction skips them), and the
container's /dev is a mount of its own.
"""

from __future__ import annotations

import errno
import os
import stat

from corral import linux
from corral.files import remove_tree
from corral.mounts import Mount
from corral.record import Record
from corral.types import InvalidInput

from .extract import OPAQUE_XATTR, is_whiteout, kept_xattr

BACKENDS = ("overlay", "copy", "bind")
_MAX_LOWER = 3000          # bytes of lowerdir=, leaving room in the page for upperdir and workdir


class ProvisionInfo(Record):
    container_id: str
    rootfs: str                       # where the root filesystem is (once `mounts` are made)
    backend: str
    image: str                        # the image reference
    image_config: dict                # Entrypoint, Cmd, Env, WorkingDir, User
    mounts: list[Mount] = list     # none (copy) or one, onto rootfs
    lowerdirs: list[str] = list  # overlay: bottom layer first
    upperdir: str | None = None
    workdir: str | None = None
    layers: list[str] = list     # the layer directories, bottom first

    @property
    def rootfs_mount(self) -> Mount | None:
        """The mount that makes `rootfs` (None for copy, where it is a plain directory)."""
        return self.mounts[0] if self.mounts else None

    @classmethod
    def from_dict(cls, data: dict) -> "ProvisionInfo":
        data = dict(data)
        data["mounts"] = [Mount(**m) for m in data.get("mounts") or []]
        return cls(**data)


def default_backend(directory: str) -> str:
    """overlay where the kernel has it and `directory`'s filesystem can hold an upperdir, else copy."""
    try:
        with open("/proc/filesystems") as f:
            if not any(line.split()[-1:] == ["overlay"] for line in f):
                return "copy"
        fstype = _fstype(directory)
    except OSError:
        return "copy"
    return "copy" if fstype in ("overlay", "nfs", "nfs4", "fuse", "aufs") else "overlay"


def _fstype(path: str) -> str:
    """The filesystem type of the mount holding `path` (the longest mount point above it)."""
    path, best, kind = os.path.realpath(path), "", ""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = fields[4].encode().decode("unicode_escape")
            fs = fields[fields.index("-") + 1]
            if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
                best, kind = point, fs
    return kind


def build(backend: str, info: ProvisionInfo, container_dir: str) -> None:
    """Make the container's rootfs (copy) or its empty mount point and the mounts to make (overlay, bind)."""
    os.mkdir(info.rootfs, 0o755)
    if backend == "overlay":
        info.upperdir = os.path.join(container_dir, "upper")
        info.workdir = os.path.join(container_dir, "work")
        os.mkdir(info.upperdir, 0o755)
        os.mkdir(info.workdir, 0o700)
        info.lowerdirs = list(info.layers)
        lowers = list(reversed(info.lowerdirs))          # overlayfs lists the top layer first
        cwd = None
        if sum(len(d) + 1 for d in lowers) > _MAX_LOWER:
            # mount(2) takes one page of options: name the layers by short symlinks, relative
            # to the directory the mount is made from (overlayfs resolves them from the cwd).
            cwd = os.path.join(container_dir, "l")
            os.mkdir(cwd)
            for i, layer in enumerate(lowers):
                os.symlink(layer, os.path.join(cwd, str(i)))
            lowers = [str(i) for i in range(len(lowers))]
        lower = ":".join(lowers)
        info.mounts = [Mount("overlay", info.rootfs, "overlay", linux.MS_NODEV,
                             f"lowerdir={lower},upperdir={info.upperdir},workdir={info.workdir}", cwd=cwd)]
    elif backend == "bind":
        if len(info.layers) != 1:
            raise InvalidInput(f"the bind backend takes single-layer images; {info.image} has {len(info.layers)}")
        info.mounts = [Mount(info.layers[0], info.rootfs, None, linux.MS_BIND | linux.MS_REC | linux.MS_NODEV,
                             readonly=True)]
    elif backend == "copy":
        for layer in info.layers:
            _Copier().merge(layer, info.rootfs)
    else:
        raise InvalidInput(f"unknown image provisioner backend {backend!r}: use one of {', '.join(BACKENDS)}")


class _Copier:
    """Copy one layer onto a rootfs as overlayfs would show it: whiteouts delete, opaque
    directories hide what was below, hardlinks within the layer stay linked. No path under the
    rootfs is followed through a symlink: a directory that is a symlink below is replaced."""

    def __init__(self):
        self.links: dict[tuple[int, int], str] = {}

    def merge(self, src: str, dst: str) -> None:
        if _xattr(src, OPAQUE_XATTR) == b"y":
            for name in os.listdir(dst):
                _remove(os.path.join(dst, name))
        for entry in os.scandir(src):
            s, d = entry.path, os.path.join(dst, entry.name)
            st = entry.stat(follow_symlinks=False)
            if is_whiteout(st):
                _remove(d)
                continue
            if stat.S_ISDIR(st.st_mode):
                try:
                    keep = stat.S_ISDIR(os.lstat(d).st_mode)
                except FileNotFoundError:
                    keep = False
                if not keep:
                    _remove(d)
                    os.mkdir(d, 0o700)
                self.merge(s, d)
            else:
                _remove(d)
                self.copy(s, d, st)
            _copy_metadata(s, d, st)

    def copy(self, s: str, d: str, st: os.stat_result) -> None:
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in self.links:
            os.link(self.links[key], d, follow_symlinks=False)
            return
        if stat.S_ISREG(st.st_mode):
            with open(s, "rb") as fin:
                fd = os.open(d, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                with os.fdopen(fd, "wb") as fout:
                    _copy_data(fin, fout, st.st_size)
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(s), d)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            os.mknod(d, stat.S_IFMT(st.st_mode) | 0o600, st.st_rdev)
        elif stat.S_ISFIFO(st.st_mode):
            os.mkfifo(d, 0o600)
        else:
            return
        if st.st_nlink > 1:
            self.links[key] = d


def _copy_data(fin, fout, size: int) -> None:
    """The data extents only, so a sparse file's holes stay holes (a layer's file may claim far
    more than it holds); in the kernel where it can (copy_file_range shares extents on
    filesystems that reflink)."""
    src, dst = fin.fileno(), fout.fileno()
    os.ftruncate(dst, size)
    position = 0
    while position < size:
        try:
            start = os.lseek(src, position, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:          # only a hole is left
                return
            start = position                    # no SEEK_DATA here: copy the rest as data
        try:
            end = os.lseek(src, start, os.SEEK_HOLE)
        except OSError:
            end = size
        _copy_range(src, dst, start, min(end, size) - start)
        position = end


def _copy_range(src: int, dst: int, offset: int, length: int) -> None:
    while length > 0:
        try:
            n = os.copy_file_range(src, dst, min(length, 1 << 30), offset, offset)
        except OSError:                     # across filesystems on older kernels, or unsupported
            data = os.pread(src, min(length, 1 << 20), offset)
            n = os.pwrite(dst, data, offset) if data else 0
        if n == 0:
            return
        offset += n
        length -= n


def _copy_metadata(s: str, d: str, st: os.stat_result) -> None:
    os.chown(d, st.st_uid, st.st_gid, follow_symlinks=False)
    link = stat.S_ISLNK(st.st_mode)
    for name in os.listxattr(s, follow_symlinks=False):
        if kept_xattr(name):
            os.setxattr(d, name, os.getxattr(s, name, follow_symlinks=False), follow_symlinks=False)
    if not link:
        os.chmod(d, stat.S_IMODE(st.st_mode))
    os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _xattr(path: str, name: str) -> bytes | None:
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError:
        return None


def _remove(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        remove_tree(path)
    else:
        os.unlink(path)
