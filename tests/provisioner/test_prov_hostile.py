"""Hostile and careless images (issue 9): nothing an image holds or names reaches the host,
fills its disk, or leaves anything behind in the store when it is refused."""

from __future__ import annotations

import http.server
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
import threading

import pytest

from corral.types import CorralError, InvalidInput
from corral.provisioner import ImageNotFound, InvalidImage, RegistryError
from corral.provisioner.core import Provisioner
SUBDIRS = ("layers", "meta", "images", "containers", "tmp", "locks")

from tests.provisioner.prov_images import (DOCKER_MANIFEST, LAYER_TYPES, aci, busybox_layer, docker_save, gnu_sparse,
                         pax_sparse, sha256, tar)


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


def test_a_sparse_file_keeps_its_holes(make_provisioner, tmp):
    store = os.path.join(tmp, "tars")
    os.makedirs(store)
    size = 256 << 20
    docker_save(os.path.join(store, "holes:latest.tar"), "holes:latest",
                [busybox_layer(), gnu_sparse("data/sparse", size, [(0, b"head"), (size - 4, b"tail")]),
                 pax_sparse("data/pax", size, [(0, b"head"), (size - 4, b"tail")])])
    for backend in ("overlay", "copy"):
        p = make_provisioner(store, image_provisioner_backend=backend)
        record = p.pull("holes")
        info = p.provision("c", "holes")
        paths = [os.path.join(p.store.layer_path(lid), "data", name)
                 for lid, name in zip(record["layers"][1:], ("sparse", "pax"))]
        if backend == "copy":
            paths += [os.path.join(info.rootfs, "data/sparse"), os.path.join(info.rootfs, "data/pax")]
        for path in paths:
            st = os.stat(path)
            assert st.st_size == size and st.st_blocks * 512 < 1 << 20, (backend, path, st.st_blocks)
            with open(path, "rb") as f:
                assert f.read(4) == b"head" and os.pread(f.fileno(), 8, size - 8) == b"\0" * 4 + b"tail"
        p.destroy("c")


def test_a_layer_past_the_size_limit_is_refused_and_leaves_nothing(make_provisioner, tmp):
    store = os.path.join(tmp, "tars")
    os.makedirs(store)
    docker_save(os.path.join(store, "terabyte:latest.tar"), "terabyte:latest",
                [gnu_sparse("huge", 1 << 40, [(0, b"x" * 100), ((1 << 40) - 100, b"y" * 100)])])
    docker_save(os.path.join(store, "paxbyte:latest.tar"), "paxbyte:latest",
                [pax_sparse("huge", 1 << 40, [(0, b"x" * 100), ((1 << 40) - 100, b"y" * 100)])])
    docker_save(os.path.join(store, "zeros:latest.tar"), "zeros:latest", [tar(("zeros", b"\0" * (3 << 20)))])
    p = make_provisioner(store, max_layer_size=1 << 20)
    for name, claim in (("terabyte", "1 TiB"), ("paxbyte", "1 TiB"), ("zeros", "3 MiB")):
        with pytest.raises(InvalidImage, match=rf"^image {name}:latest: layer sha256:[0-9a-f]{{12}}: it unpacks to more than "
                                               rf"1 MiB \(entry '\w+' claims {claim}\); see --max-layer-size$"):
            p.pull(name)
        assert p.images() == [] and store_leftovers(p) == {}
    assert make_provisioner(store).pull("zeros")["layers"]        # the default limit (16 GiB) takes it


CLI = [os.path.join(os.path.dirname(sys.executable), "corral")]


def cli(env, *args):
    return subprocess.run(CLI + list(args), env=env, capture_output=True, text=True, timeout=60)


def test_the_size_limit_on_the_command_line(tmp):
    store = os.path.join(tmp, "tars")
    os.makedirs(store)
    docker_save(os.path.join(store, "zeros:latest.tar"), "zeros:latest", [tar(("zeros", b"\0" * (3 << 20)))])
    env = dict(os.environ, CORRAL_WORK_DIR=os.path.join(tmp, "work"), CORRAL_DOCKER_REGISTRY=store)
    for args in (["pull", "--max-layer-size", "2M", "zeros"],
                 ["run", "--max-layer-size", "2MiB", "--image", "zeros", "--", "/bin/true"]):
        refused = cli(env, *args)
        assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
        assert "unpacks to more than 2 MiB" in refused.stderr
    bad = cli(env, "pull", "--max-layer-size", "lots", "zeros")
    assert bad.returncode == 2 and "invalid size 'lots'" in bad.stderr
    assert os.listdir(os.path.join(tmp, "work", "provisioner", "layers")) == []
    assert cli(env, "pull", "--max-layer-size", "4M", "zeros").returncode == 0


CAP_NET_RAW = bytes([1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])   # v2, permitted cap_net_raw


def test_xattrs_kept_dropped_and_refused(make_provisioner, tmp):
    store = os.path.join(tmp, "tars")
    os.makedirs(store)
    kept = {"user.note": "hello", "security.capability": CAP_NET_RAW.decode("latin-1")}
    dropped = {"trusted.evil": "x", "trusted.overlay.redirect": "/etc", "user.overlay.opaque": "y",
               "security.selinux": "system_u:object_r:shadow_t:s0"}
    docker_save(os.path.join(store, "caps:latest.tar"), "caps:latest",
                [tar(("bin", ("dir",)), ("bin/ping", b"#!/bin/sh\n", {"mode": 0o755, "xattrs": {**kept, **dropped}}))])
    docker_save(os.path.join(store, "badcap:latest.tar"), "badcap:latest",
                [tar(("bin", ("dir",)), ("bin/ping", b"x", {"xattrs": {"security.capability": "garbage"}}))])
    p = make_provisioner(store)
    record = p.pull("caps")
    ping = os.path.join(p.store.layer_path(record["layers"][0]), "bin/ping")
    assert os.getxattr(ping, "user.note") == b"hello"
    assert os.getxattr(ping, "security.capability") == CAP_NET_RAW
    assert sorted(os.listxattr(ping)) == ["security.capability", "user.note"]
    with pytest.raises(InvalidImage, match=r"^image badcap:latest: layer sha256:[0-9a-f]{12}: entry 'bin/ping': the host "
                                           r"refuses its xattr security.capability \(Invalid argument\)$"):
        p.pull("badcap")
    assert [r["reference"] for r in p.images()] == ["caps:latest"]
    assert os.listdir(p.store.path("tmp")) == [] and os.listdir(p.store.path("locks")) == ["store"]


def test_every_source_checks_its_digests(make_provisioner, registry, tmp):
    name = f"evil/{os.urandom(4).hex()}"
    climb = "../" * 20 + tmp.lstrip("/")
    registry.push.image(name, "v1", [busybox_layer()], diff_ids=[climb])
    p = make_provisioner(registry.host)
    with pytest.raises(InvalidImage, match=r"invalid digest '(\.\./)+"):
        p.pull(f"{name}:v1")
    assert p.images() == [] and store_leftovers(p) == {}


def test_failed_pulls_leave_nothing_lock_files_included(make_provisioner, registry, tmp):
    store = os.path.join(tmp, "tars")
    os.makedirs(store)
    docker_save(os.path.join(store, "good:latest.tar"), "good:latest", [busybox_layer()])
    docker_save(os.path.join(store, "bad:latest.tar"), "bad:latest",
                [tar(("ok", b"verifies")), tar(("x", ("sym", "/")), ("x/etc", b"x"))])
    tars, reg = make_provisioner(store), make_provisioner(registry.host)
    for p, ref in ((tars, "missing"), (tars, "bad"), (reg, "no/such"), (reg, "no/such:other")):
        with pytest.raises(CorralError):
            p.pull(ref)
    assert store_leftovers(tars) == {} and store_leftovers(reg) == {}
    tars.pull("good")                           # a pull that succeeds leaves its layer and record only
    assert store_leftovers(tars) == {"layers": os.listdir(tars.store.path("layers")),
                                     "images": os.listdir(tars.store.path("images"))}


def test_images_rm_takes_the_name_images_lists(registry, tmp):
    store, appc = os.path.join(tmp, "tars"), os.path.join(tmp, "aci")
    os.makedirs(store)
    os.makedirs(appc)
    docker_save(os.path.join(store, "app:1.0.tar"), "app:1.0", [busybox_layer()])
    with open(os.path.join(appc, "a.aci"), "wb") as f:
        f.write(aci("example.com/app", {"version": "1.0", "os": "linux", "arch": "amd64"}, [("f", b"f")]))
    name = f"rm/{os.urandom(4).hex()}"
    registry.push.image(name, "v1", [busybox_layer()])
    env = dict(os.environ, CORRAL_WORK_DIR=os.path.join(tmp, "work"), CORRAL_APPC_STORE_DIR=appc)
    assert cli(dict(env, CORRAL_DOCKER_REGISTRY=store), "pull", "app:1.0").returncode == 0
    assert cli(dict(env, CORRAL_DOCKER_REGISTRY=registry.host), "pull", f"{name}:v1").returncode == 0
    assert cli(env, "pull", "--image-type", "appc", "example.com/app:1.0,arch=amd64").returncode == 0
    listed = [line.split()[0] for line in cli(env, "images").stdout.splitlines()[1:]]
    assert sorted(listed) == sorted(["app:1.0", f"{registry.host}/{name}:v1",
                                     "example.com/app,arch=amd64,os=linux,version=1.0"])
    for registry_flag in (store, registry.host, "https://registry.example.com"):   # whatever is configured now
        for image in listed:
            removed = cli(dict(env, CORRAL_DOCKER_REGISTRY=registry_flag), "images", "rm", image)
            assert (removed.returncode, removed.stdout, removed.stderr) in (
                (0, f"removed {image}\n", ""), (1, "", f"corral: no such image: {image}\n"))
        assert cli(env, "images").stdout.splitlines()[1:] == []
        for p in ((store, "app:1.0"), (registry.host, f"{name}:v1")):
            assert cli(dict(env, CORRAL_DOCKER_REGISTRY=p[0]), "pull", p[1]).returncode == 0
        assert cli(env, "pull", "--image-type", "appc", "example.com/app:1.0,arch=amd64").returncode == 0


@pytest.mark.parametrize("args", [["pull", "127.0.0.1:99999/x"], ["pull", "host:0/x"], ["pull", "a..b:5000/x"],
                                  ["run", "--image", "127.0.0.1:99999/x", "--", "/bin/true"],
                                  ["pull", "--docker-registry", "127.0.0.1:99999", "x"],
                                  ["pull", "--docker-registry", "ftp://example.com", "x"]])
def test_a_malformed_reference_is_bad_input(tmp, args):
    env = dict(os.environ, CORRAL_WORK_DIR=os.path.join(tmp, "work"), CORRAL_DOCKER_REGISTRY="127.0.0.1:5000")
    result = cli(env, *args)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "invalid image reference" in result.stderr or "invalid docker registry" in result.stderr


# -- the same class, beyond the review's list ---------------------------------------------


def test_appc_labels_name_no_path(make_provisioner, tmp):
    store = os.path.join(tmp, "aci")
    os.makedirs(os.path.join(store, "example.com"))
    labels = {"version": "1.0", "os": "linux", "arch": "amd64"}
    app = aci("example.com/app", labels, [("f", b"f")],
              dependencies=[{"imageName": "example.com/base", "labels": [{"name": "version", "value": "../../x"}]}])
    with open(os.path.join(store, "example.com", "app-1.0-linux-amd64.aci"), "wb") as f:
        f.write(app)
    p = make_provisioner("/nonexistent", appc_store_dir=store)
    for ref in ("example.com/app:1.0/../../../x", "example.com/app:1.0,arch=../x"):
        with pytest.raises(InvalidInput, match=r"^invalid appc label \w+='[^']*/[^']*' in .*: a value has no '/'$"):
            p.pull(ref, "appc")
    with pytest.raises(InvalidImage, match=r"^appc image example.com/app,arch=amd64,os=linux,version=1.0: "
                                           r"dependency invalid appc label version='\.\./\.\./x'"):
        p.pull("example.com/app:1.0,arch=amd64", "appc")
    assert p.images() == [] and os.listdir(p.store.path("tmp")) == []


def _pax_tar(records: dict) -> bytes:
    """A tar whose one entry carries the given pax records (tarfile writes them as they are)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as t:
        info = tarfile.TarInfo("f")
        info.pax_headers = records
        t.addfile(info, io.BytesIO(b""))
    return out.getvalue()


def _sparse_chain(blocks: int) -> bytes:
    """Old-GNU sparse extension blocks, each 21 more (offset, 1) entries, chained to the next."""
    out, offset = bytearray(), 2
    for i in range(blocks):
        block = bytearray(512)
        for j in range(21):
            block[24 * j:24 * j + 12] = tarfile.itn(offset, 12, tarfile.GNU_FORMAT)
            block[24 * j + 12:24 * j + 24] = tarfile.itn(1, 12, tarfile.GNU_FORMAT)
            offset += 2
        block[504] = i < blocks - 1
        out += block
    return bytes(out)


def test_layers_that_would_reach_the_host_some_other_way(make_provisioner, tmp):
    store = os.path.join(tmp, "tars")
    os.makedirs(store)
    layers = {
        "hardlink-to-dir": (tar(("d", ("dir",)), ("h", ("link", "d"))), CorralError,
                            r"cannot unpack entry 'h': Operation not permitted"),
        "whiteout-dotdot": (tar(("d", ("dir",)), ("d/.wh...", b"")), InvalidImage,
                            r"layer whiteout 'd/\.wh\.\.\.' names no entry"),
        "huge-pax-header": (_pax_tar({"comment": "x" * (2 << 20)}), InvalidImage,
                            r"a layer tar header claims 2 MiB; at most 1 MiB is read"),
        "endless-sparse-map": (gnu_sparse("s", 1 << 40, [(0, b"x")], _sparse_chain(3000)), InvalidImage,
                               r"entry 's': its sparse map is longer than 1 MiB"),
    }
    for name, (layer, error, message) in layers.items():
        docker_save(os.path.join(store, f"{name}:latest.tar"), f"{name}:latest", [layer])
        p = make_provisioner(store)
        with pytest.raises(error, match=rf"^image {name}:latest: layer sha256:[0-9a-f]{{12}}: {message}$"):
            p.pull(name)
        assert p.images() == [] and store_leftovers(p) == {}


def test_malformed_configs_are_one_line(make_provisioner, registry):
    """What a registry stores without looking: the config blob (the manifest it checks itself)."""
    name = f"shapes/{os.urandom(4).hex()}"
    layer = busybox_layer()
    good = {"rootfs": {"type": "layers", "diff_ids": [sha256(layer)]}}
    cases = {
        "config-a-list": ([1, 2], "the image config is not a JSON object"),
        "rootfs-a-string": ({"rootfs": "x"}, "the manifest or config lists no layers"),
        "entrypoint-a-string": ({**good, "config": {"Entrypoint": "/bin/sh"}},
                                "the image config's Entrypoint is not a list of strings"),
        "env-numbers": ({**good, "config": {"Env": [1]}}, "the image config's Env is not a list of strings"),
        "user-a-number": ({**good, "config": {"User": 0}}, "the image config's User is not a string"),
        "inner-config-list": ({**good, "config": [1]}, "the image config's config is not an object"),
    }
    p = make_provisioner(registry.host)
    for tag, (config, message) in cases.items():
        raw = json.dumps(config).encode()
        doc = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
               "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                          "digest": registry.push.blob(name, raw), "size": len(raw)},
               "layers": [{"mediaType": LAYER_TYPES["plain"], "digest": registry.push.blob(name, layer),
                           "size": len(layer)}]}
        registry.push.manifest(name, tag, doc, DOCKER_MANIFEST)
        with pytest.raises(InvalidImage, match=f"^{registry.host}/{name}:{tag}: {message}$"):
            p.pull(f"{registry.host}/{name}:{tag}")
    assert p.images() == [] and store_leftovers(p) == {}


@pytest.mark.parametrize("manifest, message", [
    ({"layers": ["x"], "config": {}}, "unsupported layer type|invalid digest"),
    ({"layers": [{"mediaType": 5}]}, "unsupported layer type 5"),
    ({"layers": [{"digest": "sha256:../../../v2/_catalog"}]}, "invalid digest"),
])
def test_malformed_manifests_are_one_line(manifest, message):
    """The shapes a registry would not store, but one that is not docker's own may serve."""
    from corral.provisioner.manifests import image_parts, select_platform
    with pytest.raises(InvalidImage, match=message):
        image_parts(manifest, {"rootfs": {"diff_ids": ["sha256:" + "0" * 64]}}, "x")
    index = {"manifests": [{"platform": "linux", "digest": "x"}, 7, {"platform": {"os": ["linux"]}}]}
    with pytest.raises(ImageNotFound, match=r"^x has no image for linux/amd64 \(it offers nothing\)$"):
        select_platform(index, {"os": "linux", "architecture": "amd64"}, "x")


def test_a_token_server_that_sends_too_much(make_provisioner):
    """A registry names its token server: what that server sends is read only up to 1 MiB."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.path.startswith("/v2/"):
                self.send_response(401)
                self.send_header("WWW-Authenticate", f'Bearer realm="http://{host}/token",service="x"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            try:
                self.wfile.write(b'{"token": "' + b"x" * (8 << 20) + b'"}')
            except OSError:
                pass                            # the client stopped reading, as it should

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    host = f"127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(RegistryError, match=rf"^the token server of {host} sent more than 1 MiB$"):
            make_provisioner(host).pull("x")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_an_image_of_more_layers_than_overlayfs_stacks_is_refused_before_any_is_fetched(make_provisioner, tmp):
    from corral.provisioner.manifests import image_parts
    store = os.path.join(tmp, "tars")
    os.makedirs(store)
    layer = tar(("x", b"x"))
    docker_save(os.path.join(store, "tall:latest.tar"), "tall:latest", [layer] * 501)
    p = make_provisioner(store)
    with pytest.raises(InvalidImage, match=r"tall:latest.tar: 501 layers; an image has at most 500$"):
        p.pull("tall")
    assert store_leftovers(p) == {}
    digest = sha256(layer)
    with pytest.raises(InvalidImage, match=r"^x: 501 layers; an image has at most 500$"):
        image_parts({"layers": [{"digest": digest}] * 501}, {"rootfs": {"diff_ids": [digest] * 501}}, "x")


@pytest.mark.parametrize("layer, message", [
    (tar(("f", b"x", {"uid": 2 ** 40})), r"entry 'f': its owner 1099511627776:0 is out of range"),
    (tar(("f", b"x", {"gid": 2 ** 32 - 1})), r"entry 'f': its owner 0:4294967295 is out of range"),
    (tar(("f", b"x", {"mtime": 2 ** 70})), r"entry 'f': its mtime 1.18\d*e\+21 is out of range"),
    (_pax_tar({"mtime": "nan"}), r"entry 'f': its mtime nan is out of range"),
])
def test_numbers_out_of_range_are_one_line(make_provisioner, tmp, layer, message):
    """An owner or a time no file can have: one line, not an OverflowError or a ValueError."""
    store = os.path.join(tmp, "tars")
    os.makedirs(store)
    docker_save(os.path.join(store, "odd:latest.tar"), "odd:latest", [layer])
    p = make_provisioner(store)
    with pytest.raises(InvalidImage, match=rf"^image odd:latest: layer sha256:[0-9a-f]{{12}}: {message}$"):
        p.pull("odd")
    assert store_leftovers(p) == {}
