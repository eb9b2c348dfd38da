"""Hostile and careless images (issue 9): nothing an image holds or names reaches the host,
fills its disk, or leaves anything behind in the store when it is refused."""

from __future__ import annotations

import json
import os
import stat
import subprocess

import pytest

from provisioner import InvalidImage
from provisioner.core import Provisioner
SUBDIRS = ("layers", "meta", "images", "containers", "tmp", "locks")

from prov_images import busybox_layer, docker_save, sha256, tar


def store_leftovers(p: Provisioner) -> dict:
    """What a refused pull must not leave: every store directory but containers/ listed."""
    return {sub: sorted(os.listdir(p.store.path(sub))) for sub in ("layers", "meta", "images", "tmp", "locks")
            if os.listdir(p.store.path(sub)) and not (sub == "locks" and os.listdir(p.store.path(sub)) == ["store"])}


def test_a_layer_id_that_is_a_path_is_refused(make_provisioner, tmp):
    host = os.path.join(tmp, "host")
    os.makedirs(os.path.join(host, "etc"))
    with open(os.path.join(host, "etc", "shadow"), "w") as f:
        f.write("root:secret\n")
    store = os.path.join(tmp, "tars")
    os.makedirs(store)
    climb = "../" * 20 + host.lstrip("/")
    base = busybox_layer()
    docker_save(os.path.join(store, "evil:latest.tar"), "evil:latest", [base, tar(("x", b"x"))],
                diff_ids=[sha256(base), climb])
    p = make_provisioner(store)
    with pytest.raises(InvalidImage, match=r"^[^\n]*invalid digest '(\.\./)+") as refused:
        p.pull("evil")
    assert "\n" not in str(refused.value)
    with pytest.raises(InvalidImage, match="invalid digest"):
        p.provision("c", "evil")
    assert p.images() == [] and p.containers() == [] and store_leftovers(p) == {}

    # A record naming such a layer (written by hand, or by an older corral) names nothing either.
    docker_save(os.path.join(store, "good:latest.tar"), "good:latest", [busybox_layer()])
    record = p.pull("good")
    with open(p.store._image_file(record["reference"]), "w") as f:
        json.dump(dict(record, layers=[climb]), f)
    with pytest.raises(InvalidImage, match="invalid layer id"):
        p.provision("c", "good")
    assert p.containers() == []


def test_the_store_is_roots_alone(make_provisioner, tmp):
    """No local user reaches a layer's setuid file (CVE-2021-41091's class): the store is 0700,
    and a store made 0755 before is tightened when it is opened."""
    store, work = os.path.join(tmp, "tars"), os.path.join(tmp, "work")
    os.makedirs(store)
    with open("/bin/busybox", "rb") as f:
        busybox = f.read()
    docker_save(os.path.join(store, "suid:latest.tar"), "suid:latest",
                [tar((".", ("dir",), {"mode": 0o755}), ("bin", ("dir",)),    # a root entry, as many layers have
                     ("bin/busybox", busybox, {"mode": 0o755}), ("bin/suid", busybox, {"mode": 0o4755}))])
    os.chmod(tmp, 0o755)                     # the test's own dir: a user may walk to the work dir
    p = make_provisioner(store, work, image_provisioner_backend="copy")
    record = p.pull("suid")
    info = p.provision("c", "suid")
    layer = p.store.layer_path(record["layers"][0])
    assert os.stat(os.path.join(layer, "bin/suid")).st_mode & 0o4000          # the image's setuid file is kept
    targets = [os.path.join(layer, "bin/suid"), os.path.join(layer, "bin/busybox"),
               os.path.join(info.rootfs, "bin/suid")]

    def as_nobody() -> list[str]:
        """The shell's status for each target user nobody tries to run (126: it may not execute it);
        the shell is the host's busybox, outside the store."""
        script = "; ".join(f"{t} true 2>/dev/null; echo $?" for t in targets)
        out = subprocess.run(["/bin/busybox", "sh", "-c", script], user=65534, group=65534, extra_groups=[],
                             capture_output=True, text=True, timeout=30, cwd="/")
        return out.stdout.split()

    assert as_nobody() == ["126"] * 3
    modes = {sub: stat.S_IMODE(os.stat(p.store.path(sub)).st_mode) for sub in ("",) + SUBDIRS}
    assert set(modes.values()) == {0o700}, modes
    for sub in ("",) + SUBDIRS:             # as a store made before the rule was
        os.chmod(p.store.path(sub), 0o755)
    make_provisioner(store, work)
    assert {stat.S_IMODE(os.stat(p.store.path(sub)).st_mode) for sub in ("",) + SUBDIRS} == {0o700}
    assert as_nobody() == ["126"] * 3
    p.destroy("c")
