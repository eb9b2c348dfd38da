"""Container rootfses (provision, destroy, recover), the tar store, appc images, prune and the CLI."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import uuid

import pytest

from corral import provisioner
from corral.types import ContainerExists, CorralError, InvalidInput
from corral.provisioner import ImageNotFound, image_user, mountns, read_image_file, resolve_user

from tests.childkit import in_child
from tests.fskit import has_topdir, need_topdir
from tests.provisioner.prov_images import aci, busybox_layer, docker_save, tar


def test_tar_store_provision_destroy_recover(make_provisioner, tmp):
    store = os.path.join(tmp, "tars")
    os.makedirs(os.path.join(store, "team"))
    runtime = {"Entrypoint": ["/bin/sh"], "User": "alice:staff", "Env": ["X=1"]}
    docker_save(os.path.join(store, "team", "app:1.0.tar"), "team/app:1.0", [busybox_layer(), tar(("f", b"v1"))],
                runtime)
    p = make_provisioner(store)
    record = p.pull("team/app:1.0")
    assert record["reference"] == "team/app:1.0" and record["config"]["Entrypoint"] == ["/bin/sh"]
    with pytest.raises(ImageNotFound, match="not found: no .*team/app:2.0.tar"):
        p.pull("team/app:2.0")

    info = p.provision("web-1", "team/app:1.0")
    passwd = read_image_file(info.layers, "/etc/passwd")
    group = read_image_file(info.layers, "/etc/group")
    assert resolve_user(record["config"]["User"], passwd, group) == (1000, 50)
    out = mountns.run(info, ["/bin/sh", "-c", "echo hi > /new; busybox cat /f /new"], chroot=True,
                      capture_output=True, text=True)
    assert out.stdout == "v1hi\n", out.stderr
    assert open(os.path.join(info.upperdir, "new")).read() == "hi\n"   # writes land in the container's upper
    with pytest.raises(ContainerExists):
        p.provision("web-1", "team/app:1.0")
    with pytest.raises(InvalidInput):
        p.provision("../escape", "team/app:1.0")

    p.provision("web-2", "team/app:1.0")
    p.provision("web-3", "team/app:1.0")
    assert p.recover(["web-2"]) == ["web-1", "web-3"]
    assert p.containers() == ["web-2"]
    assert not p.destroy("web-1")


def test_the_stores_containers_dir_spreads_each_containers_rootfs(make_provisioner, tmp):
    """ext4 places each container's directory (rootfs, upper, work) in a block group of its own
    choosing: chattr +T on the store's containers/ (corral.files.spread_subdirectories)."""
    import pathlib
    need_topdir(pathlib.Path(tmp))
    store = os.path.join(tmp, "tars")
    os.makedirs(store)
    docker_save(os.path.join(store, "one:latest.tar"), "one:latest", [busybox_layer()])
    p = make_provisioner(store)
    container = os.path.dirname(p.provision("spread", "one").rootfs)
    spread = [has_topdir(os.path.dirname(container)), has_topdir(container)]
    assert p.destroy("spread")
    assert spread == [True, False]


def test_destroy_refuses_a_mounted_rootfs(make_provisioner, tmp):
    store = os.path.join(tmp, "tars")
    os.makedirs(store)
    docker_save(os.path.join(store, "one:latest.tar"), "one:latest", [busybox_layer()])
    p = make_provisioner(store, image_provisioner_backend="bind")
    info = p.provision("c", "one")

    def destroy_while_mounted():         # a private namespace holding the mount, as a container would
        mountns.private_namespace()
        mountns.mount_all(info)
        try:
            p.destroy("c")
            said = "destroyed"
        except CorralError as e:
            said = str(e)
        try:
            open(os.path.join(info.rootfs, "x"), "w")
        except OSError as e:
            said += f"|{e.strerror}"
        return said
    said = in_child(destroy_while_mounted)
    assert said == f"cannot remove the rootfs of c: {info.rootfs} is mounted|Read-only file system"
    assert p.destroy("c")


def test_bind_takes_single_layers_only(make_provisioner, tmp):
    store = os.path.join(tmp, "tars")
    os.makedirs(store)
    docker_save(os.path.join(store, "two:latest.tar"), "two:latest", [busybox_layer(), tar(("x", b"x"))])
    p = make_provisioner(store, image_provisioner_backend="bind")
    with pytest.raises(InvalidInput, match="single-layer images; two:latest has 2"):
        p.provision("c", "two")
    assert p.containers() == []


def test_remove_and_prune_keep_what_is_used(make_provisioner, tmp):
    store = os.path.join(tmp, "tars")
    os.makedirs(store)
    base = busybox_layer()
    docker_save(os.path.join(store, "a:latest.tar"), "a:latest", [base, tar(("a", b"a"))])
    docker_save(os.path.join(store, "b:latest.tar"), "b:latest", [base, tar(("b", b"b"))])
    p = make_provisioner(store)
    p.pull("a")
    p.pull("b")
    assert len(os.listdir(p.store.path("layers"))) == 3             # the base layer is shared
    p.provision("uses-a", "a")
    p.remove("a")
    with pytest.raises(ImageNotFound, match="no such image: a:latest"):
        p.remove("a")
    assert p.prune() == []                                          # a container still uses a's layers
    p.destroy("uses-a")
    assert len(p.prune()) == 1
    p.remove("b")
    assert len(p.prune()) == 2 and os.listdir(p.store.path("layers")) == []


def _serve(directory):
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=directory)  # noqa: E731
    http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    return httpd, thread


def test_appc_store_dependencies_and_discovery(make_provisioner, tmp):
    store, served = os.path.join(tmp, "aci"), os.path.join(tmp, "www")
    os.makedirs(os.path.join(store, "example.com"))
    os.makedirs(os.path.join(served, "example.com"))
    labels = {"version": "1.0", "os": "linux", "arch": "amd64"}
    base = aci("example.com/base", labels, [("bin", ("dir",)), ("bin/busybox", open("/bin/busybox", "rb").read(),
                                                                  {"mode": 0o755}), ("bin/sh", ("sym", "busybox"))])
    app = aci("example.com/app", labels, [("app", b"app")],
              app={"exec": ["/bin/sh", "-c", "busybox cat /app"], "user": "0", "group": "0",
                   "environment": [{"name": "K", "value": "v"}], "workingDirectory": "/"},
              dependencies=[{"imageName": "example.com/base", "labels": [{"name": "version", "value": "1.0"}]}])
    with open(os.path.join(store, "example.com", "base-1.0-linux-amd64.aci"), "wb") as f:
        f.write(base)
    with open(os.path.join(served, "example.com", "app-1.0-linux-amd64.aci"), "wb") as f:
        f.write(app)
    httpd, thread = _serve(served)
    try:
        p = make_provisioner("/nonexistent", appc_store_dir=store,
                             appc_simple_discovery_uri_prefix=f"http://127.0.0.1:{httpd.server_address[1]}/")
        ref = "example.com/app:1.0,arch=amd64"
        record = p.pull(ref, "appc")
        assert record["digest"].startswith("sha512-") and len(record["layers"]) == 2
        assert record["config"] == {"Entrypoint": ["/bin/sh", "-c", "busybox cat /app"], "Cmd": None,
                                    "Env": ["K=v"], "WorkingDir": "/", "User": "0:0"}
        info = p.provision("appc-1", ref, "appc")
        out = mountns.run(info, record["config"]["Entrypoint"], chroot=True, capture_output=True, text=True)
        assert out.stdout == "app", out.stderr
        p.destroy("appc-1")
        with pytest.raises(ImageNotFound):
            p.pull("example.com/missing:1.0", "appc")
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


CLI = [os.path.join(os.path.dirname(sys.executable), "corral")]


def test_cli(registry, tmp):
    name = f"cli/{uuid.uuid4().hex[:8]}"
    registry.push.image(name, "v1", [busybox_layer(), tar(("x", b"x"))])
    env = dict(os.environ, CORRAL_WORK_DIR=os.path.join(tmp, "work"), CORRAL_DOCKER_REGISTRY=registry.host)
    run = lambda *a: subprocess.run(CLI + list(a), env=env, capture_output=True, text=True, timeout=60)  # noqa: E731
    pulled = run("pull", f"{name}:v1")
    assert pulled.returncode == 0, pulled.stderr
    lines = pulled.stdout.splitlines()
    assert sum(line.startswith("layer sha256-") for line in lines) == 2
    assert lines[-1].startswith(f"pulled {registry.host}/{name}:v1 (sha256:")
    listed = json.loads(run("images", "--json").stdout)
    assert [r["reference"] for r in listed] == [f"{registry.host}/{name}:v1"]
    assert run("images").stdout.splitlines()[1].startswith(f"{registry.host}/{name}:v1")
    missing = run("pull", f"{name}:nope")
    assert (missing.returncode, missing.stderr) == (1, f"corral: image {registry.host}/{name}:nope not found\n")
    bad = run("pull", "Bad Ref")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "invalid image reference" in bad.stderr
    assert run("images", "rm", f"{name}:v1").stdout == f"removed {registry.host}/{name}:v1\n"
    assert run("images", "prune").stdout == "removed 2 unused layers\n"
    gone = run("images", "rm", f"{name}:v1")
    assert gone.returncode == 1 and "no such image" in gone.stderr


def test_many_layers_fit_one_overlay_mount(make_provisioner, tmp):
    store = os.path.join(tmp, "tars")
    os.makedirs(store)
    layers = [busybox_layer()] + [tar((f"f{i}", b"x"), ("top", str(i).encode())) for i in range(60)]
    docker_save(os.path.join(store, "tall:latest.tar"), "tall:latest", layers)
    p = make_provisioner(store, image_provisioner_backend="overlay")
    info = p.provision("tall", "tall")
    assert len(info.mounts[0].data) < 4096 and len(":".join(info.lowerdirs)) > 4096
    out = mountns.run(info, ["/bin/sh", "-c", "busybox cat /top; echo; ls / | busybox wc -l"], chroot=True,
                      capture_output=True, text=True)
    assert out.stdout.split() == ["59", str(60 + 4)], out.stderr
    assert image_user(info.layers, "alice") == (1000, 1000)
    p.destroy("tall")


def test_local_busybox_image_runs(make_provisioner, tmp):
    from corral.provisioner.localimage import write_busybox_tarball
    store = os.path.join(tmp, "images")
    assert write_busybox_tarball(store).endswith("/busybox:latest.tar")
    p = make_provisioner(store)
    info = p.provision("bb", "busybox")
    out = mountns.run(info, info.image_config["Cmd"] + ["-c", "echo $0 ok; id -u"], chroot=True,
                      capture_output=True, text=True, env={"PATH": "/bin"})
    assert out.stdout.split() == ["/bin/sh", "ok", "0"], out.stderr
    p.destroy("bb")


def test_two_processes_pull_once(registry, tmp):
    name = f"procs/{uuid.uuid4().hex[:8]}"
    registry.push.image(name, "v1", [busybox_layer(), tar(("big", os.urandom(2_000_000)))])
    env = dict(os.environ, CORRAL_WORK_DIR=os.path.join(tmp, "work"), CORRAL_DOCKER_REGISTRY=registry.host)
    procs = [subprocess.Popen(CLI + ["pull", f"{name}:v1"], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(3)]
    outputs = [proc.communicate(timeout=60)[0] for proc in procs]
    assert all(proc.returncode == 0 for proc in procs)
    fetched = sum(line.startswith("layer ") and "fetched" in line for out in outputs for line in out.splitlines())
    assert fetched == 2


def test_registry_schemes_and_credentials(make_provisioner, tmp):
    from corral.provisioner.registry import credentials_for
    p = make_provisioner("registry.example.com:5000", docker_insecure_registry=("insecure.example.com:80",))
    assert p._registry("registry.example.com:5000").base == "https://registry.example.com:5000"
    assert p._registry("localhost:5000").base == "http://localhost:5000"
    assert p._registry("insecure.example.com:80").base == "http://insecure.example.com:80"
    assert p.resolve("team/app") == "registry.example.com:5000/team/app:latest"
    explicit = make_provisioner("http://10.0.0.1:5000")
    assert explicit._registry("10.0.0.1:5000").base == "http://10.0.0.1:5000"
    with_path = make_provisioner("HTTP://[::1]:5000/v2/")
    assert with_path.resolve("team/app") == "[::1]:5000/team/app:latest"
    assert with_path._registry("[::1]:5000").base == "http://[::1]:5000"
    hub = make_provisioner("https://registry-1.docker.io")
    assert hub.resolve("busybox") == "registry-1.docker.io/library/busybox:latest"
    auths = {"https://index.docker.io/v1/": {"auth": "dXNlcjpwYXNz"}}      # user:pass
    assert credentials_for(auths, "registry-1.docker.io") == ("user", "pass")
    assert credentials_for(auths, "other.example.com") is None


# Modules only pulls, prunes and failures need. A cold `corral run --image` whose image is in the
# store imports none of them (docs/ARCHITECTURE.md, "Why the cold path looks the way it does").
PULL_ONLY = {"dataclasses", "inspect", "urllib.parse", "shutil", "tempfile", "tarfile", "threading", "requests"}


def test_provisioning_from_the_store_imports_nothing_only_pulls_need(make_provisioner, tmp):
    store, work = os.path.join(tmp, "tars"), os.path.join(tmp, "work")
    os.makedirs(store)
    docker_save(os.path.join(store, "app:1.0.tar"), "app:1.0", [busybox_layer()], {"User": "alice"})
    make_provisioner(store, work).pull("app:1.0")
    # What corral/cli/run.py's cmd_run and SyncMesosContainerizer do with it, in a fresh interpreter.
    script = f"""if True:
        import argparse, json, sys
        before = set(sys.modules)
        from corral.provisioner.cli import provisioner
        from corral.provisioner import ProvisionerFlags, Provisioner, image_user, merge_command
        p = provisioner(argparse.Namespace(work_dir={work!r}, docker_registry={store!r}))
        info = p.provision("c1", "app:1.0")
        merge_command(info.image_config, value="/bin/true")
        assert image_user(info.layers, "alice") == (1000, 1000)
        assert p.destroy("c1")
        Provisioner({work!r}, ProvisionerFlags(docker_registry="https://registry.example:5000")).resolve("busybox")
        print(json.dumps(sorted(set(sys.modules) - before)))
    """
    src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(provisioner.__file__))))  # holds corral/
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, (src, os.environ.get("PYTHONPATH")))))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    imported = set(json.loads(out.stdout))
    assert "corral.provisioner.core" in imported
    assert sorted(imported & PULL_ONLY) == []
