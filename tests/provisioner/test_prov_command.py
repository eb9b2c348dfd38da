"""Image references, and image configs merged with Mesos commands."""

from __future__ import annotations

import os

import pytest

from corral.types import InvalidInput
from corral.provisioner import Command, ProvisionerFlags, merge_command, read_image_file, resolve_user
from corral.provisioner.reference import host_platform, parse_appc, parse_docker


def test_docker_references():
    assert str(parse_docker("busybox")) == "registry-1.docker.io/library/busybox:latest"
    assert str(parse_docker("docker.io/team/app:1.2")) == "registry-1.docker.io/team/app:1.2"
    assert str(parse_docker("localhost:5000/a/b")) == "localhost:5000/a/b:latest"
    ref = parse_docker("busybox@sha256:" + "a" * 64, "127.0.0.1:5000")
    assert (ref.registry, ref.repository, ref.reference) == ("127.0.0.1:5000", "busybox", "sha256:" + "a" * 64)
    assert str(parse_docker("team/app:v1", "")) == "team/app:v1"
    for bad in ("", "UPPER", "a:b:c", "busybox@sha256:12", "x/../y", "name:-tag"):
        with pytest.raises(InvalidInput, match="invalid image reference"):
            parse_docker(bad)


def test_records():
    assert parse_docker("busybox") == parse_docker("docker.io/library/busybox:latest") != parse_docker("busybox:1")
    assert parse_appc("example.com/app:1.0").labels == parse_appc("example.com/app,version=1.0").labels
    assert ProvisionerFlags().platform == host_platform()
    assert ProvisionerFlags(platform={"os": "linux", "architecture": "s390x"}).platform["architecture"] == "s390x"
    one, two = Command(["a"]), Command(["b"])
    one.env["X"] = "1"
    assert two.env == {} and one.to_dict()["env"] == {"X": "1"}


def test_appc_references():
    ref = parse_appc("example.com/app:1.0")
    assert ref.label("version") == "1.0" and ref.label("os") == "linux" and ref.label("arch")
    assert parse_appc("example.com/app,version=2,arch=aarch64").label("arch") == "aarch64"
    with pytest.raises(InvalidInput):
        parse_appc("example.com/app,version")


CONFIG = {"Entrypoint": ["/entry", "-x"], "Cmd": ["default"], "Env": ["A=1", "B=2"], "WorkingDir": "/w",
          "User": "alice"}


def test_merge_command_follows_mesos():
    assert merge_command(CONFIG).argv == ["/entry", "-x", "default"]
    assert merge_command(CONFIG, arguments=["a", "b"]).argv == ["/entry", "-x", "a", "b"]     # arguments replace Cmd
    direct = merge_command(CONFIG, value="/bin/true", arguments=["true", "1"])   # shell=false: argv[0] included
    assert (direct.executable, direct.argv) == ("/bin/true", ["true", "1"])
    assert merge_command(CONFIG, value="/bin/true").argv == ["/bin/true"]
    assert merge_command(CONFIG, value="echo hi", shell=True).argv == ["/bin/sh", "-c", "echo hi"]
    assert merge_command({"Cmd": ["/bin/ls", "-l"]}).argv == ["/bin/ls", "-l"]
    merged = merge_command(CONFIG, env={"B": "task"}, workdir=None)
    assert merged.env == {"A": "1", "B": "task"} and merged.workdir == "/w" and merged.user == "alice"
    assert merge_command(CONFIG, workdir="/t", user="root").workdir == "/t"
    with pytest.raises(InvalidInput, match="nothing to run"):
        merge_command({})


PASSWD = "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:100::/home/alice:/bin/sh\n"
GROUP = "root:x:0:\nstaff:x:50:alice\n"


def test_resolve_user():
    assert resolve_user("alice", PASSWD, GROUP) == (1000, 100)
    assert resolve_user("alice:staff", PASSWD, GROUP) == (1000, 50)
    assert resolve_user("1000", PASSWD) == (1000, 100)
    assert resolve_user("4242", PASSWD) == (4242, 0)
    assert resolve_user("4242:7", None) == (4242, 7)
    with pytest.raises(InvalidInput, match="'bob' is not in the image's /etc/passwd"):
        resolve_user("bob", PASSWD)
    with pytest.raises(InvalidInput, match="group 'wheel'"):
        resolve_user("alice:wheel", PASSWD, GROUP)


def test_read_image_file_through_layers(tmp):
    low, mid, top = (os.path.join(tmp, n) for n in ("low", "mid", "top"))
    for d in (low, mid, top):
        os.makedirs(os.path.join(d, "etc"))
    with open(os.path.join(low, "etc", "passwd"), "w") as f:
        f.write("low")
    assert read_image_file([low, mid, top], "/etc/passwd") == "low"
    with open(os.path.join(mid, "etc", "passwd"), "w") as f:
        f.write("mid")
    assert read_image_file([low, mid, top], "/etc/passwd") == "mid"
    os.mknod(os.path.join(top, "etc", "passwd"), 0o20600, 0)        # a whiteout
    assert read_image_file([low, mid, top], "/etc/passwd") is None
    os.unlink(os.path.join(top, "etc", "passwd"))
    os.setxattr(os.path.join(top, "etc"), "trusted.overlay.opaque", b"y")
    assert read_image_file([low, mid, top], "/etc/passwd") is None
    os.symlink("/etc/shadow", os.path.join(top, "etc", "passwd"))
    assert read_image_file([low, mid, top], "/etc/passwd") is None     # never followed


def test_manifest_kinds_and_platforms():
    import json

    from corral.provisioner.errors import ImageNotFound, InvalidImage
    from corral.provisioner.manifests import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, parse, select_platform
    index = {"schemaVersion": 2, "manifests": [
        {"digest": "sha256:" + "1" * 64, "platform": {"os": "linux", "architecture": "arm", "variant": "v6"}},
        {"digest": "sha256:" + "2" * 64, "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
        {"digest": "sha256:" + "3" * 64, "platform": {"os": "linux", "architecture": "arm64"}},
        {"digest": "sha256:" + "4" * 64, "platform": {"os": "unknown", "architecture": "unknown"}}]}
    assert parse(json.dumps(index).encode(), None, "x")[0] == OCI_INDEX                 # by shape alone
    assert parse(b'{"schemaVersion": 2, "layers": []}', None, "x")[0] == OCI_MANIFEST
    assert parse(b'{"layers": []}', DOCKER_MANIFEST, "x")[0] == DOCKER_MANIFEST          # by header
    with pytest.raises(InvalidImage, match="schema 1"):
        parse(b'{"schemaVersion": 1}', None, "x")
    pick = lambda **want: select_platform(index, {"os": "linux", **want}, "x")["digest"][7]  # noqa: E731
    assert pick(architecture="arm", variant="v7") == "2"
    assert pick(architecture="arm64", variant="v8") == "3"       # an entry naming no variant serves any
    with pytest.raises(ImageNotFound, match="offers linux/arm/v6, linux/arm/v7, linux/arm64"):
        pick(architecture="arm", variant="v5")
