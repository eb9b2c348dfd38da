"""Safe layer extraction: a tar stream into an empty directory, in overlayfs's own format.

Safety: names are cleaned and may not climb out with `..`; no entry is written through a
symlink (every parent must be a directory this extraction made or checked); hardlinks point at
entries of the same layer; device nodes are skipped. Absolute symlinks are kept as they are:
they are resolved inside the container, never here.

Size: a sparse file's holes stay holes (it is written extent by extent), and a layer unpacks to
at most `max_size` bytes, counting each entry's header and the whole size a file claims (holes
included: the copy backend or a tool reading the file may fill them). tar's pax and long-name
headers, which tarfile reads whole into memory, are refused past 1 MiB (as Go's archive/tar does).

xattrs: an image keeps `user.*` and `security.capability` (file capabilities, as `ping` needs);
all others are dropped: `trusted.*` steer overlayfs or need the host's privilege, `security.*`
others are the host's LSM labels, `system.*` ACLs and the like. One the host refuses (a malformed
capability) fails the layer with one line naming the entry.

Whiteouts become what overlayfs reads in a lower layer: `.wh.NAME` a 0:0 character device at
NAME (unless this layer itself has NAME: a whiteout hides lower layers only), `.wh..wh..opq`
the xattr trusted.overlay.opaque=y on its directory. The copy backend reads the same marks.
"""

from __future__ import annotations

import os
import posixpath
import stat

from corral.files import remove_tree
from corral.types import CorralError

from .errors import InvalidImage

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
_XATTR = "SCHILY.xattr."
MAX_HEADER = 1 << 20                       # a pax or GNU long-name header, read whole
_BLOCK = 512


def clean(name: str, what: str = "entry") -> str:
    """A member name as a relative path inside the layer ('' for the root); InvalidImage if it climbs out."""
    parts = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise InvalidImage(f"layer {what} {name!r} points outside the layer")
        parts.append(part)
    return "/".join(parts)


def kept_xattr(name: str) -> bool:
    """Whether an image's xattr is kept (the module's docstring says why). `user.overlay.*` is
    overlayfs's own on a userxattr mount: it would steer lookups as trusted.overlay.* does."""
    return (name.startswith("user.") and not name.startswith("user.overlay.")) or name == "security.capability"


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


class _Layer:
    def __init__(self, root: str, max_size: int | None = None):
        self.root = root
        self.max_size = max_size
        self.size = 0                      # what the entries so far unpack to (holes included)
        self.dirs = {""}                   # relative paths known to be real directories
        self.made: set[str] = set()        # entries this layer wrote (whiteouts never hide these)
        self.whiteouts: list[str] = []
        self.opaque: list[str] = []
        self.dir_times: list[tuple[str, int]] = []    # (directory, mtime in ns), set last

    def path(self, rel: str) -> str:
        return os.path.join(self.root, rel) if rel else self.root

    def parent(self, rel: str) -> None:
        """Make sure every ancestor of `rel` is a real directory (never a symlink), making it if absent."""
        parent = posixpath.dirname(rel)
        if parent in self.dirs:
            return
        self.parent(parent)
        path = self.path(parent)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            os.mkdir(path, 0o755)
        else:
            if not stat.S_ISDIR(st.st_mode):
                raise InvalidImage(f"layer entry {rel!r} would be written through the non-directory {parent!r}")
        self.dirs.add(parent)

    def clear(self, rel: str, keep_dir: bool) -> None:
        """Remove what is at `rel` so a new entry can take its place (a directory stays if kept)."""
        path = self.path(rel)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return
            remove_tree(path)
            inside = rel + "/"
            self.dirs = {d for d in self.dirs if d != rel and not d.startswith(inside)}
            self.made = {m for m in self.made if not m.startswith(inside)}
        else:
            os.unlink(path)

    def count(self, member) -> None:
        self.size += _BLOCK + max(member.size, 0)
        if self.max_size is not None and self.size > self.max_size:
            raise InvalidImage(f"it unpacks to more than {_size_text(self.max_size)} "
                               f"(entry {member.name!r} claims {_size_text(member.size)}); "
                               f"see --max-layer-size")

    def entry(self, tar, member, rel: str) -> None:
        self.count(member)
        base = posixpath.basename(rel)
        if base == OPAQUE:
            self.opaque.append(posixpath.dirname(rel))
            return
        if base.startswith(WHITEOUT):
            hidden = base[len(WHITEOUT):]
            if hidden in (".", ".."):
                raise InvalidImage(f"layer whiteout {member.name!r} names no entry")
            if hidden:
                self.whiteouts.append(posixpath.join(posixpath.dirname(rel), hidden))
            return
        if not rel:
            if member.isdir():
                self.attrs(member, self.root)
                self.dir_times.append((self.root, _ns(member)))
            return
        if member.ischr() or member.isblk():
            # A device node in an image would open the host's device from inside the container
            # (a block device 8:0 is the host's disk); the container's /dev is made for it instead.
            return
        self.parent(rel)
        self.clear(rel, keep_dir=member.isdir())
        path = self.path(rel)
        if member.isdir():
            if not os.path.isdir(path):
                os.mkdir(path, 0o700)
            self.dirs.add(rel)
            self.dir_times.append((path, _ns(member)))
        elif member.isreg():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as out, tar.extractfile(member) as src:
                if member.sparse is None:
                    _copy(src, out, member.size)
                else:
                    _write_sparse(src.raw, out, member)
        elif member.issym():
            os.symlink(member.linkname, path)
        elif member.islnk():
            target = clean(member.linkname, "hardlink")
            if target not in self.made:
                raise InvalidImage(f"layer hardlink {member.name!r} points at {member.linkname!r}, not in this layer")
            os.link(self.path(target), path, follow_symlinks=False)
            self.made.add(rel)
            return                          # a hardlink shares its target's metadata
        elif member.isfifo():
            os.mkfifo(path, 0o600)
        else:
            return                          # tarfile's other types carry no filesystem object
        self.made.add(rel)
        self.attrs(member, path)
        if not member.isdir():
            os.utime(path, ns=(_ns(member),) * 2, follow_symlinks=False)

    def attrs(self, member, path: str) -> None:
        if not (0 <= member.uid < 0xFFFFFFFF and 0 <= member.gid < 0xFFFFFFFF):    # -1 would mean "unchanged"
            raise InvalidImage(f"entry {member.name!r}: its owner {member.uid}:{member.gid} is out of range")
        os.chown(path, member.uid, member.gid, follow_symlinks=False)
        for key, value in member.pax_headers.items():
            name = key[len(_XATTR):]
            if not key.startswith(_XATTR) or not kept_xattr(name):
                continue
            raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
            try:
                os.setxattr(path, name, raw, follow_symlinks=False)
            except OSError as e:
                raise InvalidImage(f"entry {member.name!r}: the host refuses its xattr {name} "
                                   f"({e.strerror})") from None
        if not member.issym():
            os.chmod(path, member.mode)     # after chown, which clears setuid and setgid

    def finish(self) -> None:
        for rel in self.whiteouts:
            self.parent(rel)
            if not os.path.lexists(self.path(rel)):     # present: this layer has it; keep it
                os.mknod(self.path(rel), stat.S_IFCHR | 0o600, 0)
        for rel in self.opaque:
            self.parent(posixpath.join(rel, OPAQUE))   # the directory itself, made if absent
            os.setxattr(self.path(rel), OPAQUE_XATTR, b"y", follow_symlinks=False)
        for path, mtime_ns in reversed(self.dir_times):
            os.utime(path, ns=(mtime_ns,) * 2, follow_symlinks=False)


def _ns(member) -> int:
    """The entry's mtime in ns; InvalidImage past what a file's time holds (NaN, inf, 2**70)."""
    if not -9e9 < member.mtime < 9e9:            # about the years 1685 to 2255
        raise InvalidImage(f"entry {member.name!r}: its mtime {member.mtime} is out of range")
    return int(member.mtime * 1_000_000_000)


def _copy(src, out, size: int) -> None:
    while size > 0 and (chunk := src.read(min(size, 1 << 20))):
        out.write(chunk)
        size -= len(chunk)


def _write_sparse(src, out, member) -> None:
    """A sparse entry's data extents, each at its offset; the holes between are never written.
    `src` is tarfile's unbuffered reader of the entry, which seeks within the stream's data."""
    end = 0
    for offset, length in member.sparse:
        if length == 0:                     # tarfile lists a GNU header's unused slots as (0, 0)
            continue
        if offset < end or length < 0 or offset + length > member.size:
            raise InvalidImage(f"entry {member.name!r}: its sparse map is out of order or past its size")
        src.seek(offset)
        out.seek(offset)
        _copy(src, out, length)
        end = offset + length
    out.truncate(member.size)


def _size_text(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.4g} {unit}"
        n /= 1024
    return f"{n} bytes"


def _tar_headers():
    """tarfile's TarInfo, but the headers tarfile reads whole into memory are bounded by MAX_HEADER:
    a pax or long-name header is refused past it before it is read (a small layer can claim one
    of gigabytes), and an old GNU sparse entry's chain of extension blocks is cut there."""
    import tarfile

    class Header(tarfile.TarInfo):
        def _proc_member(self, tar):
            if self.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                             tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK) and self.size > MAX_HEADER:
                raise InvalidImage(f"a layer tar header claims {_size_text(self.size)}; "
                                   f"at most {_size_text(MAX_HEADER)} is read")
            if self.type != tarfile.GNUTYPE_SPARSE:
                return super()._proc_member(tar)
            stream, tar.fileobj = tar.fileobj, _Bounded(tar.fileobj, MAX_HEADER, self.name)
            try:                            # tarfile reads the extension blocks from tar.fileobj
                return super()._proc_member(tar)
            finally:
                tar.fileobj = stream
    return Header


class _Bounded:
    """A stream that refuses to read past `limit` bytes (tarfile's own, while it reads a header)."""

    def __init__(self, stream, limit: int, name: str):
        self.stream, self.left, self.name = stream, limit, name

    def read(self, n: int) -> bytes:
        self.left -= n
        if self.left < 0:
            raise InvalidImage(f"entry {self.name!r}: its sparse map is longer than {_size_text(MAX_HEADER)}")
        return self.stream.read(n)

    def tell(self) -> int:
        return self.stream.tell()


def extract(source, dest: str, strip: str = "", keep=None, max_size: int | None = None) -> None:
    """Extract the uncompressed tar stream `source` (anything with read(n)) into the directory `dest`.

    `strip` drops a leading directory (appc's `rootfs/`); entries outside it are skipped, and
    handed to `keep(member, fileobj)` if given (appc's `manifest`). Past `max_size` bytes
    unpacked (see the module's docstring) it stops with InvalidImage. Any error is one line
    (InvalidImage for what the layer holds, CorralError for what the host refuses); the caller
    removes `dest`.
    """
    import tarfile                      # here, not above: provisioning imports this module's marks only
    layer = _Layer(dest, max_size)
    member = None
    try:
        with tarfile.open(fileobj=source, mode="r|", tarinfo=_tar_headers()) as tar:
            for member in tar:
                rel = clean(member.name)
                if strip:
                    if rel != strip and not rel.startswith(strip + "/"):
                        if keep is not None and member.isreg():
                            keep(member, tar.extractfile(member))
                        continue
                    rel = rel[len(strip) + 1:]
                layer.entry(tar, member, rel)
            member = None
        layer.finish()
    except tarfile.TarError as e:
        raise InvalidImage(f"unreadable layer tar: {e}") from None
    except OSError as e:
        where = f"entry {member.name!r}" if member is not None else "the layer"
        raise CorralError(f"cannot unpack {where}: {e.strerror or e}") from None
