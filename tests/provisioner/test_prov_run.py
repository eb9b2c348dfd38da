"""`corral run --image`: the Mesos containerizer on provisioned root filesystems, end to end."""

from __future__ import annotations

import json
import os

import pytest

from tests.provisioner.prov_images import busybox_layer, tar

RUNTIME = {"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo $GREETING from $(pwd) as $(id -u):$(id -g)"],
           "Env": ["GREETING=hello", "PATH=/bin"], "WorkingDir": "/data", "User": "alice:staff"}


@pytest.fixture(scope="module")
def app_image(registry):
    registry.push.image("team/app", "1.0", [busybox_layer(), tar(("data", ("dir",)), ("data/f", b"v1\n"))], RUNTIME)
    return registry.url


def run(corral, registry_url, *args):
    return corral.run("run", "--docker-registry", registry_url, "--image", "team/app:1.0", *args)


def test_the_image_config_makes_the_command(corral, app_image):
    result = run(corral, app_image)
    assert (result.returncode, result.stdout, result.stderr) == (0, "hello from /data as 1000:50\n", "")


def test_a_command_replaces_entrypoint_and_cmd_but_not_the_user(corral, app_image):
    result = run(corral, app_image, "--", "/bin/sh", "-c", "cat /data/f; id -u; echo $GREETING")
    assert (result.returncode, result.stdout) == (0, "v1\n1000\nhello\n"), result.stderr


def test_writes_stay_in_the_container(corral, app_image):
    first = run(corral, app_image, "--user", "0", "--shell", "echo changed > /data/f; cat /data/f")
    assert first.stdout == "changed\n", first.stderr
    assert run(corral, app_image, "--", "/bin/sh", "-c", "cat /data/f").stdout == "v1\n"
    provisioned = os.path.join(corral.work_dir, "provisioner", "containers")
    assert os.listdir(provisioned) == []          # each foreground run's rootfs went with it


def test_volumes_and_the_sandbox(corral, app_image, tmp_path):
    (tmp_path / "in").write_text("host\n")
    script = "cat /in/in; echo out > /mnt/mesos/sandbox/cache/x; echo $MESOS_SANDBOX"
    result = run(corral, app_image, "--detach", "--name", "vol", "--volume", f"{tmp_path}:/in:ro",
                 "--volume", "cache:/mnt/mesos/sandbox/cache", "--user", "0", "--shell", script)
    assert result.returncode == 0, result.stderr
    assert json.loads(corral.run("wait", "vol", "--json").stdout)["state"] == "TASK_FINISHED"
    assert corral.run("logs", "vol").stdout == "host\n/mnt/mesos/sandbox\n"
    sandbox = os.path.join(corral.work_dir, "containers", "vol")
    assert open(os.path.join(sandbox, "cache", "x")).read() == "out\n"
    corral.run("destroy", "vol", check=True)
    assert os.listdir(os.path.join(corral.work_dir, "provisioner", "containers")) == []


def test_a_missing_image_is_one_line_and_leaves_nothing(corral, app_image):
    result = corral.run("run", "--docker-registry", app_image, "--image", "team/nope:1.0", "--", "true")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "team/nope" in result.stderr, result.stderr
    assert corral.sync().containers() == []
    assert os.listdir(os.path.join(corral.work_dir, "provisioner", "containers")) == []
