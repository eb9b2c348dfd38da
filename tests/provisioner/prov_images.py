"""Test images without a Docker engine: layer tars written here from /bin/busybox, pushed to a
real registry through its v2 API, saved as docker-save tarballs or packed as appc archives."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile

import requests
import zstandard

BUSYBOX = "/bin/busybox"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
LAYER_TYPES = {"gzip": "application/vnd.docker.image.rootfs.diff.tar.gzip",
               "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
               "plain": "application/vnd.oci.image.layer.v1.tar"}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar(*entries) -> bytes:
    """Entries: (name, content bytes | ('dir',) | ('sym', target) | ('link', target) | ('chr', maj, min)
    | ('fifo',)), optionally followed by a dict of uid, gid, mode, mtime, xattrs."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as t:
        for entry in entries:
            name, what, opts = entry[0], entry[1], (entry[2] if len(entry) > 2 else {})
            info = tarfile.TarInfo(name)
            info.mtime = opts.get("mtime", 1_600_000_000)
            info.uid, info.gid = opts.get("uid", 0), opts.get("gid", 0)
            data = None
            if isinstance(what, bytes):
                info.size, info.mode, data = len(what), opts.get("mode", 0o644), io.BytesIO(what)
            elif what[0] == "dir":
                info.type, info.mode = tarfile.DIRTYPE, opts.get("mode", 0o755)
            elif what[0] == "sym":
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, what[1], 0o777
            elif what[0] == "link":
                info.type, info.linkname = tarfile.LNKTYPE, what[1]
            elif what[0] in ("chr", "blk"):
                info.type = tarfile.CHRTYPE if what[0] == "chr" else tarfile.BLKTYPE
                info.devmajor, info.devminor, info.mode = what[1], what[2], 0o666
            elif what[0] == "fifo":
                info.type, info.mode = tarfile.FIFOTYPE, 0o644
            if opts.get("xattrs"):
                info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in opts["xattrs"].items()}
            t.addfile(info, data)
    return out.getvalue()


def gnu_sparse(name: str, size: int, extents: list[tuple[int, bytes]], extension_blocks: bytes = b"") -> bytes:
    """A tar of one old-GNU sparse file (type 'S') of `size` bytes holding only `extents`
    (offset, data), at most 4: tarfile reads such entries but cannot write them.
    `extension_blocks`: raw 512-byte blocks of more of its map, placed after the header."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = sum(len(d) for _, d in extents), 0o644, 1_600_000_000
    header = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    header[156:157] = tarfile.GNUTYPE_SPARSE
    for i, (offset, data) in enumerate(extents):
        header[386 + 24 * i:398 + 24 * i] = tarfile.itn(offset, 12, tarfile.GNU_FORMAT)
        header[398 + 24 * i:410 + 24 * i] = tarfile.itn(len(data), 12, tarfile.GNU_FORMAT)
    header[483:495] = tarfile.itn(size, 12, tarfile.GNU_FORMAT)          # the size it claims
    header[482] = bool(extension_blocks)
    header[148:156] = b" " * 8
    header[148:155] = b"%06o\0" % sum(header)
    data = b"".join(d for _, d in extents)
    return bytes(header) + extension_blocks + data + b"\0" * (-len(data) % 512) + b"\0" * 1024


def pax_sparse(name: str, size: int, extents: list[tuple[int, bytes]]) -> bytes:
    """A tar of one GNU sparse file in the pax format 0.1 (GNU.sparse.map), as GNU tar writes it."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as t:
        info = tarfile.TarInfo(name)
        data = b"".join(d for _, d in extents)
        info.size, info.mode, info.mtime = len(data), 0o644, 1_600_000_000
        info.pax_headers = {"GNU.sparse.size": str(size),
                            "GNU.sparse.map": ",".join(f"{offset},{len(d)}" for offset, d in extents)}
        t.addfile(info, io.BytesIO(data))
    return out.getvalue()


def busybox_layer(extra=()) -> bytes:
    with open(BUSYBOX, "rb") as f:
        binary = f.read()
    return tar(("bin", ("dir",)), ("bin/busybox", binary, {"mode": 0o755}), ("bin/sh", ("sym", "busybox")),
               ("bin/ls", ("sym", "/bin/busybox")), ("etc", ("dir",)),
               ("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n"),
               ("etc/group", b"root:x:0:\nstaff:x:50:alice\nalice:x:1000:\n"),
               ("tmp", ("dir",), {"mode": 0o1777}), *extra)


def compress(data: bytes, how: str) -> bytes:
    if how == "gzip":
        return gzip.compress(data, compresslevel=1, mtime=0)
    if how == "zstd":
        return zstandard.ZstdCompressor(write_checksum=True).compress(data)
    return data


def config(diff_ids, runtime=None, arch="amd64", variant=None) -> bytes:
    doc = {"architecture": arch, "os": "linux", "config": runtime or {},
           "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    if variant:
        doc["variant"] = variant
    return json.dumps(doc).encode()


class Pusher:
    """Pushes blobs and manifests to a registry through its v2 API (monolithic uploads)."""

    def __init__(self, base: str, headers: dict | None = None):
        self.base, self.headers = base, headers or {}

    def blob(self, repo: str, data: bytes) -> str:
        digest = sha256(data)
        r = requests.post(f"{self.base}/v2/{repo}/blobs/uploads/", headers=self.headers, timeout=10)
        assert r.status_code == 202, r.text
        location = requests.compat.urljoin(self.base, r.headers["Location"])
        sep = "&" if "?" in location else "?"
        r = requests.put(f"{location}{sep}digest={digest}", data=data, timeout=30,
                         headers=dict(self.headers, **{"Content-Type": "application/octet-stream"}))
        assert r.status_code == 201, r.text
        return digest

    def manifest(self, repo: str, tag: str, doc: dict, media_type: str) -> str:
        body = json.dumps(doc).encode()
        r = requests.put(f"{self.base}/v2/{repo}/manifests/{tag}", data=body, timeout=10,
                         headers=dict(self.headers, **{"Content-Type": media_type}))
        assert r.status_code == 201, r.text
        return sha256(body)

    def image(self, repo: str, tag: str, layers: list[bytes], runtime=None, how="gzip", arch="amd64",
              variant=None, media_type=DOCKER_MANIFEST, diff_ids=None) -> tuple[str, dict]:
        """Push an image; (manifest digest, manifest descriptor for an index)."""
        hows = how if isinstance(how, list) else [how] * len(layers)
        blobs = [compress(layer, h) for layer, h in zip(layers, hows)]
        cfg = config(diff_ids or [sha256(layer) for layer in layers], runtime, arch, variant)
        config_type = ("application/vnd.docker.container.image.v1+json" if media_type == DOCKER_MANIFEST
                       else "application/vnd.oci.image.config.v1+json")
        doc = {"schemaVersion": 2, "mediaType": media_type,
               "config": {"mediaType": config_type, "digest": self.blob(repo, cfg), "size": len(cfg)},
               "layers": [{"mediaType": LAYER_TYPES[h], "digest": self.blob(repo, b), "size": len(b)}
                          for b, h in zip(blobs, hows)]}
        body = json.dumps(doc).encode()
        digest = self.manifest(repo, tag, doc, media_type)
        platform = {"os": "linux", "architecture": arch, **({"variant": variant} if variant else {})}
        return digest, {"mediaType": media_type, "digest": digest, "size": len(body), "platform": platform}


def docker_save(path: str, repo_tag: str, layers: list[bytes], runtime=None, diff_ids=None) -> None:
    """A `docker save` tarball (the legacy layout: <id>/layer.tar, <config>.json, manifest.json);
    `diff_ids` replaces the layers' own in the config (a hostile image's)."""
    diff_ids = diff_ids or [sha256(layer) for layer in layers]
    cfg = config(diff_ids, runtime)
    names = [f"{sha256(layer)[7:]}/layer.tar" for layer in layers]
    manifest = [{"Config": f"{sha256(cfg)[7:]}.json", "RepoTags": [repo_tag], "Layers": names}]
    files = [(f"{sha256(cfg)[7:]}.json", cfg), ("manifest.json", json.dumps(manifest).encode())]
    files += list(zip(names, layers))
    with open(path, "wb") as f:
        f.write(tar(*[(n, d) for n, d in files]))


def aci(name: str, labels: dict, files=(), app=None, dependencies=()) -> bytes:
    """An appc image archive: `manifest` and `rootfs/`."""
    manifest = {"acKind": "ImageManifest", "acVersion": "0.8.11", "name": name,
                "labels": [{"name": k, "value": v} for k, v in labels.items()],
                "dependencies": list(dependencies)}
    if app:
        manifest["app"] = app
    entries = [("manifest", json.dumps(manifest).encode()), ("rootfs", ("dir",))]
    entries += [(f"rootfs/{e[0]}",) + tuple(e[1:]) for e in files]
    return gzip.compress(tar(*entries), compresslevel=1)
