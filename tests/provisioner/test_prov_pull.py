"""Pulls from a real registry, provisioned through each backend, read back through a private mount namespace."""

from __future__ import annotations

import io
import os
import tarfile
import threading
import uuid

import pytest

from corral.provisioner import ImageNotFound, InvalidImage, RegistryError, mountns
from corral.provisioner.progress import NoProgress

from tests.provisioner.prov_images import (DOCKER_LIST, OCI_INDEX, OCI_MANIFEST, busybox_layer, tar)


def repo(prefix="test"):
    return f"{prefix}/{uuid.uuid4().hex[:10]}"


def tree(info) -> dict[str, tuple[tarfile.TarInfo, bytes | None]]:
    """The rootfs as the container sees it: name -> (tar header, content), read by busybox tar
    in a child's private mount namespace."""
    result = mountns.run(info, ["/bin/busybox", "tar", "-c", "."], capture_output=True, check=True)
    out = {}
    with tarfile.open(fileobj=io.BytesIO(result.stdout)) as t:
        for member in t:
            name = member.name.lstrip("./").rstrip("/")
            data = t.extractfile(member).read() if member.isreg() else None
            out[name] = (member, data)
    return out


LAYERS = [
    busybox_layer(extra=[("data", ("dir",)), ("data/keep", b"keep"), ("data/gone", b"gone"),
                         ("opq", ("dir",)), ("opq/old1", b"1"), ("opq/sub", ("dir",)), ("opq/sub/old2", b"2"),
                         ("dir-gone", ("dir",)), ("dir-gone/x", b"x")]),
    tar(("data", ("dir",)), ("data/.wh.gone", b""), (".wh.dir-gone", b""), ("opq", ("dir",)),
        ("opq/.wh..wh..opq", b""), ("opq/new", b"new"), ("data/.wh.same", b""), ("data/same", b"kept"),
        ("data/bits", b"#!/bin/sh\n", {"mode": 0o4750, "uid": 1000, "gid": 50, "mtime": 1234567890,
                                       "xattrs": {"user.corral": "yes"}})),
    tar(("data", ("dir",)), ("data/keep", b"keep v3"), ("opq", ("dir",)), ("opq/top", b"top")),
]


@pytest.fixture(scope="module")
def layered(registry):
    name = repo("layered")
    registry.push.image(name, "v1", LAYERS, how=["gzip", "zstd", "plain"], media_type=OCI_MANIFEST)
    return f"{registry.host}/{name}:v1"


@pytest.mark.parametrize("backend", ["overlay", "copy"])
def test_layers_whiteouts_and_opaque_dirs(make_provisioner, registry, layered, backend):
    p = make_provisioner(registry.host, image_provisioner_backend=backend)
    record = p.pull(layered)
    assert len(record["layers"]) == 3
    info = p.provision("c1", layered)
    files = tree(info)
    assert files["data/keep"][1] == b"keep v3"
    assert "data/gone" not in files and "dir-gone" not in files and "dir-gone/x" not in files
    assert sorted(n for n in files if n.startswith("opq/")) == ["opq/new", "opq/top"]
    assert files["data/same"][1] == b"kept"               # a whiteout never hides its own layer
    bits = files["data/bits"][0]
    assert (bits.mode, bits.uid, bits.gid, int(bits.mtime)) == (0o4750, 1000, 50, 1234567890)
    assert files["tmp"][0].mode == 0o1777
    assert files["bin/ls"][0].linkname == "/bin/busybox"    # absolute symlinks inside stay
    assert not any(".wh." in n for n in files)
    out = mountns.run(info, ["/bin/sh", "-c", "busybox cat /data/keep; echo; ls /opq"], chroot=True,
                      capture_output=True, text=True)
    assert out.stdout.split() == ["keep", "v3", "new", "top"], out.stderr
    layer = os.path.join(info.layers[1], "data", "bits")
    assert os.getxattr(layer, "user.corral") == b"yes"
    assert p.destroy("c1") and not os.path.exists(os.path.dirname(info.rootfs))


def test_image_config_and_manifest_list(make_provisioner, registry):
    name = repo("multi")
    runtime = {"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo hi"], "Env": ["A=1", "PATH=/bin"],
               "WorkingDir": "/tmp", "User": "alice"}
    _, amd = registry.push.image(name, "amd", [busybox_layer([("arch", b"amd64")])], runtime, arch="amd64")
    _, arm = registry.push.image(name, "arm", [busybox_layer([("arch", b"arm64")])], arch="arm64", variant="v8")
    attestation = dict(amd, digest=arm["digest"], platform={"os": "unknown", "architecture": "unknown"},
                       annotations={"vnd.docker.reference.type": "attestation-manifest"})
    registry.push.manifest(name, "list", {"schemaVersion": 2, "mediaType": DOCKER_LIST,
                                          "manifests": [attestation, arm, amd]}, DOCKER_LIST)
    # An OCI index without mediaType in the body: the shape decides.
    registry.push.manifest(name, "oci", {"schemaVersion": 2, "manifests": [arm, amd]}, OCI_INDEX)

    p = make_provisioner(registry.host)
    for tag in ("list", "oci"):
        record = p.pull(f"{registry.host}/{name}:{tag}")
        assert record["config"] == runtime
        info = p.provision(f"c-{tag}", f"{registry.host}/{name}:{tag}")
        assert tree(info)["arch"][1] == b"amd64"
        p.destroy(f"c-{tag}")

    arm_only = make_provisioner(registry.host, platform={"os": "linux", "architecture": "s390x"})
    with pytest.raises(ImageNotFound, match="no image for linux/s390x .*offers linux/amd64, linux/arm64/v8"):
        arm_only.pull(f"{registry.host}/{name}:list", force=True)


class Counting(NoProgress):
    def __init__(self):
        self.started, self.lock = [], threading.Lock()

    def start(self, name, total):
        with self.lock:
            self.started.append(name)


def test_concurrent_pulls_fetch_once_and_force_follows_the_tag(make_provisioner, registry):
    name = repo("race")
    registry.push.image(name, "v1", [busybox_layer(), tar(("a", b"a")), tar(("b", b"b"))])
    ref = f"{registry.host}/{name}:v1"
    p = make_provisioner(registry.host)
    progress, errors = Counting(), []

    def pull():
        try:
            p.pull(ref, progress=progress)
        except Exception as e:       # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=pull) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(progress.started) == 3
    # Layers are shared by digest: an image with the same base fetches only its new layer.
    registry.push.image(name, "v2", [busybox_layer(), tar(("c", b"c"))])
    p.pull(f"{registry.host}/{name}:v2", progress=progress)
    assert len(progress.started) == 4
    # The tag moves: only a force pull sees it, and fetches only what is new.
    registry.push.image(name, "v1", [busybox_layer(), tar(("a", b"a")), tar(("d", b"d"))])
    before = p.pull(ref)["layers"]                  # from the store: the registry is not asked
    moved = p.pull(ref, progress=progress, force=True)
    assert len(progress.started) == 5
    assert moved["layers"][:2] == before[:2] and moved["layers"][2] != before[2]
    assert p.pull(ref)["layers"] == moved["layers"]


def test_errors_are_one_line_and_leave_nothing(make_provisioner, registry, tmp):
    p = make_provisioner(registry.host)
    with pytest.raises(ImageNotFound, match=r"^image 127.0.0.1:\d+/nothing/here:latest not found$"):
        p.pull(f"{registry.host}/nothing/here")
    dead = make_provisioner(f"127.0.0.1:{_closed_port()}")
    with pytest.raises(RegistryError, match="cannot reach registry 127.0.0.1:.*: .*[Cc]onnection refused"):
        dead.pull("busybox")
    import socket
    with socket.socket() as silent:                 # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        mute = make_provisioner(f"127.0.0.1:{silent.getsockname()[1]}", registry_timeout=0.3)
        with pytest.raises(RegistryError, match=r"^cannot reach registry 127.0.0.1:\d+: timed out$"):
            mute.pull("busybox")
    name = repo("bad")
    good = busybox_layer()
    registry.push.image(name, "v1", [good, tar(("x", b"x"))],
                        diff_ids=["sha256:" + "0" * 64, "sha256:" + "1" * 64])
    with pytest.raises(Exception, match="diff_id"):
        p.pull(f"{registry.host}/{name}:v1")
    store = p.store
    assert os.listdir(store.path("layers")) == [] and os.listdir(store.path("images")) == []
    assert os.listdir(store.path("tmp")) == []


def test_malicious_layer_is_refused(make_provisioner, registry, tmp):
    target = os.path.join(tmp, "victim")
    name = repo("evil")
    registry.push.image(name, "v1", [tar(("x", ("sym", tmp)), ("x/victim", b"owned"))])
    p = make_provisioner(registry.host)
    with pytest.raises(InvalidImage, match="through the non-directory 'x'"):
        p.pull(f"{registry.host}/{name}:v1")
    assert not os.path.exists(target) and os.listdir(p.store.path("layers")) == []


def _closed_port() -> int:
    from tests.provisioner.conftest import free_port
    return free_port()


def test_token_auth(make_provisioner, token_registry, tmp):
    name = "secure/busybox"
    token_registry.push.image(name, "v1", [busybox_layer()])
    ref = f"{token_registry.host}/{name}:v1"
    config = os.path.join(tmp, "config.json")
    with open(config, "w") as f:
        f.write('{"auths": {"%s": {"auth": "YWxpY2U6c2VjcmV0"}}}' % token_registry.host)   # alice:secret
    p = make_provisioner(token_registry.host, docker_config=config)
    assert p.pull(ref)["layers"]
    query, auth = token_registry.tokens.requests[-1]
    assert query["scope"] == "repository:secure/busybox:pull" and auth.startswith("Basic ")
    with open(config, "w") as f:
        f.write('{"auths": {"%s": {"username": "alice", "password": "wrong"}}}' % token_registry.host)
    refused = make_provisioner(token_registry.host, docker_config=config)
    with pytest.raises(RegistryError, match="token server .* refused a token .*HTTP 401"):
        refused.pull(ref)


def test_basic_auth_and_redirected_blobs(make_provisioner, registry, front, tmp):
    name = repo("front")
    _, desc = registry.push.image(name, "v1", [busybox_layer(), tar(("f", b"f"))])
    ref = f"{front.host}/{name}:v1"
    config = os.path.join(tmp, "config.json")
    with open(config, "w") as f:
        f.write('{"auths": {"http://%s": {"username": "bob", "password": "hunter2"}}}' % front.host)
    with pytest.raises(RegistryError, match="requires credentials"):
        make_provisioner(front.host).pull(ref)
    p = make_provisioner(front.host, docker_config=config)
    front.corrupt.add("sha256:")
    with pytest.raises(Exception, match="content is sha256:.*expected"):
        p.pull(ref)
    assert os.listdir(p.store.path("layers")) == [] and os.listdir(p.store.path("images")) == []
    front.corrupt.clear()
    assert len(p.pull(ref)["layers"]) == 2
    assert front.blob_headers and not any("Authorization" in h for h in front.blob_headers)


def test_a_bad_layer_fails_the_pull_cleanly(make_provisioner, registry, front, tmp):
    name = repo("stop")
    big = [tar((f"big{i}", os.urandom(3_000_000))) for i in range(3)]
    _, desc = registry.push.image(name, "v1", big + [tar(("bad", b"bad"))])
    config = os.path.join(tmp, "config.json")
    with open(config, "w") as f:
        f.write('{"auths": {"%s": {"username": "bob", "password": "hunter2"}}}' % front.host)
    p = make_provisioner(front.host, docker_config=config, max_parallel_downloads=4)
    import gzip
    from tests.provisioner.prov_images import sha256
    front.corrupt.add(sha256(gzip.compress(big[0], compresslevel=1, mtime=0)))
    with pytest.raises(Exception, match="content is sha256:.*expected"):
        p.pull(f"{front.host}/{name}:v1")
    # Nothing stays: not the layer that failed, nor those that verified before it failed.
    assert os.listdir(p.store.path("images")) == [] and os.listdir(p.store.path("tmp")) == []
    assert os.listdir(p.store.path("layers")) == [] and os.listdir(p.store.path("locks")) == ["store"]
