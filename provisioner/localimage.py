"""A busybox image made from the host's static busybox, as a `docker save` tarball for the tar store.

For machines without a registry or internet: `python -m corral.provisioner.localimage DIR` writes
DIR/busybox:latest.tar, and `corral run --docker-registry DIR --image busybox ...` runs from it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import tarfile

from corral.files import write_atomic
from corral.types import InvalidInput

from .reference import host_platform

APPLETS = ("sh", "ls", "cat", "echo", "env", "id", "ps", "sleep", "true", "false", "mkdir", "rm", "wget")


def _tar(entries) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as t:
        for info, data in entries:
            info.mtime = 0
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def _entry(name: str, mode: int, kind=tarfile.REGTYPE, data: bytes | None = None, link: str = ""):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname = kind, mode, link
    info.size = len(data) if data is not None else 0
    return info, data


def busybox_layer(busybox: str) -> bytes:
    with open(busybox, "rb") as f:
        binary = f.read()
    entries = [_entry(d, 0o755, tarfile.DIRTYPE) for d in ("bin", "etc", "root", "mnt", "proc", "sys", "dev")]
    entries += [_entry("tmp", 0o1777, tarfile.DIRTYPE), _entry("bin/busybox", 0o755, data=binary)]
    entries += [_entry(f"bin/{a}", 0o777, tarfile.SYMTYPE, link="busybox") for a in APPLETS]
    passwd = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n"
    entries += [_entry("etc/passwd", 0o644, data=passwd),
                _entry("etc/group", 0o644, data=b"root:x:0:\nnogroup:x:65534:\n")]
    return _tar(entries)


def write_busybox_tarball(directory: str, name: str = "busybox", tag: str = "latest",
                          busybox: str = "/bin/busybox") -> str:
    if not os.path.isfile(busybox):
        raise InvalidInput(f"no static busybox at {busybox} (apt-get install busybox-static)")
    layer = busybox_layer(busybox)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({"architecture": host_platform()["architecture"], "os": "linux",
                         "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"], "WorkingDir": "/"},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    layer_name = f"{diff_id[7:]}/layer.tar"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [f"{name}:{tag}"], "Layers": [layer_name]}]).encode()
    archive = _tar([_entry(config_name, 0o644, data=config), _entry(layer_name, 0o644, data=layer),
                    _entry("manifest.json", 0o644, data=manifest)])
    path = os.path.join(directory, f"{name}:{tag}.tar")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_atomic(path, archive)
    return path


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m corral.provisioner.localimage DIR")
    print(write_busybox_tarball(sys.argv[1]))
