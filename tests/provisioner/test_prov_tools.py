"""An image made by real tools, not by these tests' own writer: umoci builds it (whiteouts from
a real deletion), skopeo pushes it; corral pulls it by tag and by digest."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

from corral.provisioner import mountns
from corral.provisioner.extract import is_whiteout


def sh(*argv):
    subprocess.run(argv, check=True, capture_output=True, timeout=60)


def test_umoci_built_skopeo_pushed(make_provisioner, registry, tmp):
    layout, bundle = os.path.join(tmp, "layout"), os.path.join(tmp, "bundle")
    sh("umoci", "init", "--layout", layout)
    sh("umoci", "new", "--image", f"{layout}:v1")
    sh("umoci", "unpack", "--image", f"{layout}:v1", bundle)
    rootfs = os.path.join(bundle, "rootfs")
    for d in ("bin", "etc", "data/old"):
        os.makedirs(os.path.join(rootfs, d))
    shutil.copy2("/bin/busybox", os.path.join(rootfs, "bin/busybox"))
    os.symlink("busybox", os.path.join(rootfs, "bin/sh"))
    with open(os.path.join(rootfs, "etc/passwd"), "w") as f:
        f.write("root:x:0:0::/root:/bin/sh\nweb:x:33:33::/srv:/bin/sh\n")
    for name in ("data/keep", "data/drop", "data/old/x"):
        with open(os.path.join(rootfs, name), "w") as f:
            f.write(name)
    sh("umoci", "repack", "--image", f"{layout}:v1", bundle)
    shutil.rmtree(bundle)
    sh("umoci", "unpack", "--image", f"{layout}:v1", bundle)
    os.unlink(os.path.join(rootfs, "data/drop"))
    shutil.rmtree(os.path.join(rootfs, "data/old"))
    sh("umoci", "repack", "--image", f"{layout}:v1", bundle)
    sh("umoci", "config", "--image", f"{layout}:v1", "--config.entrypoint", "/bin/sh",
       "--config.cmd", "-c", "--config.cmd", "id -u", "--config.user", "web", "--config.workingdir", "/data",
       "--config.env", "MODE=prod")
    name = f"tools/{uuid.uuid4().hex[:8]}"
    sh("skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:v1", f"docker://{registry.host}/{name}:v1")

    p = make_provisioner(registry.host)
    record = p.pull(f"{name}:v1")
    assert record["config"] == {"Entrypoint": ["/bin/sh"], "Cmd": ["-c", "id -u"], "Env": ["MODE=prod"],
                                "WorkingDir": "/data", "User": "web"}
    assert len(record["layers"]) == 2
    top = p.store.layer_path(record["layers"][1])
    assert all(is_whiteout(os.lstat(os.path.join(top, n))) for n in ("data/drop", "data/old"))
    pinned = p.pull(f"{registry.host}/{name}@{record['digest']}")
    assert pinned["layers"] == record["layers"]
    info = p.provision("tools", f"{name}:v1")
    out = mountns.run(info, ["/bin/sh", "-c", "ls -A /data"], chroot=True, capture_output=True, text=True)
    assert out.stdout.split() == ["keep"], out.stderr
    p.destroy("tools")
