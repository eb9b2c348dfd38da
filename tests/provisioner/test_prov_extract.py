"""Layer extraction: metadata kept, whiteouts in overlay format, and nothing written outside the layer."""

from __future__ import annotations

import io
import os
import stat

import pytest

from corral.provisioner.errors import InvalidImage
from corral.provisioner.extract import OPAQUE_XATTR, extract
from corral.provisioner.streams import decompressed

from tests.provisioner.prov_images import compress, tar


def unpack(data: bytes, dest: str) -> str:
    os.makedirs(dest, exist_ok=True)
    extract(decompressed(io.BytesIO(data)), dest)
    return dest


def host_snapshot(directory: str) -> dict:
    out = {}
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = os.path.join(root, name)
            st = os.lstat(path)
            out[path] = (st.st_mode, st.st_size, st.st_mtime_ns,
                         open(path, "rb").read() if stat.S_ISREG(st.st_mode) else None)
    return out


@pytest.mark.parametrize("how", ["gzip", "zstd", "plain"])
def test_metadata_and_whiteouts(tmp, how):
    layer = tar(("d", ("dir",), {"mode": 0o750, "uid": 7, "gid": 8, "mtime": 1000}),
                ("d/f", b"data", {"mode": 0o2711, "uid": 1000, "gid": 1000, "mtime": 2000,
                                  "xattrs": {"user.k": "v", "trusted.overlay.redirect": "/etc"}}),
                ("d/hard", ("link", "d/f")), ("d/fifo", ("fifo",)), ("d/null", ("chr", 1, 3)), ("sda", ("blk", 8, 0)),
                ("d/.wh.lower", b""), ("o", ("dir",)), ("o/.wh..wh..opq", b""), ("o/mine", b"m"),
                ("d/.wh.f", b""))
    root = unpack(compress(layer, how), os.path.join(tmp, "layer"))
    d, f = os.lstat(f"{root}/d"), os.lstat(f"{root}/d/f")
    assert (stat.S_IMODE(d.st_mode), d.st_uid, d.st_gid, d.st_mtime) == (0o750, 7, 8, 1000)
    assert (stat.S_IMODE(f.st_mode), f.st_uid, f.st_gid, f.st_mtime) == (0o2711, 1000, 1000, 2000)
    assert os.getxattr(f"{root}/d/f", "user.k") == b"v"
    assert "trusted.overlay.redirect" not in os.listxattr(f"{root}/d/f")   # overlay's own xattrs are refused
    assert os.lstat(f"{root}/d/hard").st_ino == f.st_ino and f.st_nlink == 2
    assert stat.S_ISFIFO(os.lstat(f"{root}/d/fifo").st_mode)
    assert not os.path.lexists(f"{root}/d/null") and not os.path.lexists(f"{root}/sda")   # devices skipped
    wh = os.lstat(f"{root}/d/lower")
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0                     # overlayfs's whiteout
    assert os.getxattr(f"{root}/o", OPAQUE_XATTR) == b"y"
    assert open(f"{root}/o/mine", "rb").read() == b"m"
    assert open(f"{root}/d/f", "rb").read() == b"data"                     # its own layer's file stays


def test_malicious_layers_write_nothing_outside(tmp):
    host = os.path.join(tmp, "host")
    os.makedirs(host)
    with open(os.path.join(host, "secret"), "w") as f:
        f.write("secret")
    before = host_snapshot(host)
    attacks = {
        "dotdot": (tar((f"../../{os.path.relpath(host, '/')}/secret", b"owned")), "outside the layer"),
        "dotdot-inner": (tar(("a/../../x", b"owned")), "outside the layer"),
        "abs-symlink-then-write": (tar(("link", ("sym", host)), ("link/secret", b"owned")), "non-directory"),
        "rel-symlink-then-write": (tar(("up", ("sym", "../../..")), ("up/tmp/x", b"owned")), "non-directory"),
        "symlink-dir-swap": (tar(("d", ("dir",)), ("d", ("sym", host)), ("d/secret", b"owned")), "non-directory"),
        "hardlink-to-host": (tar(("h", ("link", f"{host}/secret"))), "not in this layer"),
        "hardlink-dotdot": (tar(("h", ("link", "../../../secret"))), "outside the layer"),
        "hardlink-through-swapped-dir": (tar(("d", ("dir",)), ("d/secret", b"x"), ("d", ("sym", host)),
                                             ("h", ("link", "d/secret"))), "not in this layer"),
        "whiteout-through-symlink": (tar(("s", ("sym", host)), ("s/.wh.secret", b"")), "non-directory"),
    }
    for name, (layer, message) in attacks.items():
        with pytest.raises(InvalidImage, match=message):
            unpack(layer, os.path.join(tmp, "layers", name))
    assert host_snapshot(host) == before


def test_absolute_symlinks_are_kept(tmp):
    root = unpack(tar(("etc", ("dir",)), ("etc/localtime", ("sym", "/usr/share/zoneinfo/UTC")),
                      ("lib", ("sym", "/usr/lib"))), os.path.join(tmp, "layer"))
    assert os.readlink(f"{root}/etc/localtime") == "/usr/share/zoneinfo/UTC"
    assert os.readlink(f"{root}/lib") == "/usr/lib"


@pytest.mark.parametrize("how", ["gzip", "zstd"])
def test_corrupt_compression_is_one_clear_error(tmp, how):
    data = bytearray(compress(tar(("f", os.urandom(50_000) + b"x" * 50_000)), how))
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(InvalidImage, match=f"corrupt {how} layer|unreadable layer tar"):
        unpack(bytes(data), os.path.join(tmp, "layer"))
