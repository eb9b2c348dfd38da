"""Hostile and careless images (issue 9): nothing an image holds or names reaches the host,
fills its disk, or leaves anything behind in the store when it is refused."""

from __future__ import annotations

import json
import os

import pytest

from provisioner import InvalidImage
from provisioner.core import Provisioner

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
