"""filesystem/linux: a root filesystem of the container's own, entered with pivot_root."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest

from corral.containerizers.mesos.mounts import resolve_in_root
from corral.types import ContainerConfig, InvalidInput


@pytest.fixture
def rootfs(tmp_path):
    """A busybox root filesystem, as an image's would be."""
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    shutil.copy("/bin/busybox", root / "bin" / "busybox")
    subprocess.run([str(root / "bin" / "busybox"), "--install", "-s", str(root / "bin")], check=True)
    for link in (root / "bin").iterdir():        # --install links to the host's path of busybox
        if link.is_symlink():
            link.unlink()
            link.symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    yield root
    with open("/proc/self/mountinfo") as f:
        assert str(tmp_path) not in f.read(), "a mount of the container leaked to the host"


def run(corral, rootfs, script: str, **config):
    mc = corral.sync()
    mc.launch("fs", ContainerConfig(argv=["/bin/sh", "-c", script], rootfs=str(rootfs), **config))
    termination = mc.wait("fs")
    files = mc.files("fs")
    out, err = open(files.stdout).read(), open(files.stderr).read()
    mc.destroy("fs", remove_sandbox=True)
    return termination, out, err


def test_the_task_sees_its_rootfs_and_nothing_of_the_host(corral, rootfs):
    script = ("ls /; echo ---; cat /etc/hostname; pwd; echo $MESOS_SANDBOX; echo $$; "
              "test -c /dev/null && test -c /dev/urandom && test -e /dev/pts/ptmx && echo devices; "
              "echo note > /mnt/mesos/sandbox/from-inside; "
              "test -e /work || test -e /root/.pyenv || echo no-host; "
              "touch /sys/x 2>/dev/null || echo sys-ro; ls /proc | grep -c '^[0-9]'")
    termination, out, err = run(corral, rootfs, script, hostname="inside")
    assert termination.state == "TASK_FINISHED", err
    listing, rest = out.split("---\n")
    assert set(listing.split()) == {"bin", "dev", "etc", "mnt", "proc", "sys"}
    lines = rest.split()
    assert lines[:4] == ["inside", "/mnt/mesos/sandbox", "/mnt/mesos/sandbox", "2"]
    assert lines[4:7] == ["devices", "no-host", "sys-ro"]
    assert int(lines[7]) <= 5


def test_sandbox_is_shared_with_the_host(corral, rootfs):
    mc = corral.sync()
    mc.launch("share", ContainerConfig(argv=["/bin/sh", "-c", "echo hi > /mnt/mesos/sandbox/note"],
                                       rootfs=str(rootfs)))
    mc.wait("share")
    assert open(os.path.join(mc.files("share").sandbox, "note")).read() == "hi\n"
    mc.destroy("share", remove_sandbox=True)


def test_volumes_read_write_and_read_only(corral, rootfs, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "in").write_text("from host\n")
    script = "cat /data/in; echo back > /data/out; cat /ro/in; echo x > /ro/nope || echo refused"
    termination, out, err = run(corral, rootfs, script, volumes=[f"{data}:/data", f"{data}:/ro:ro"])
    assert termination.state == "TASK_FINISHED", err
    assert out == "from host\nfrom host\nrefused\n"
    assert (data / "out").read_text() == "back\n"
    assert not (data / "nope").exists()


def test_symlinks_in_the_image_cannot_aim_mounts_at_the_host(corral, rootfs, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    # An image whose /mnt points at a host directory, absolutely and through '..'.
    (rootfs / "mnt").symlink_to(str(outside))
    (rootfs / "etc" / "hosts").symlink_to("../../../../../../" + str(outside) + "/hosts")
    termination, out, err = run(corral, rootfs, "ls /mnt/mesos/sandbox >/dev/null && echo ok")
    assert (termination.state, out) == ("TASK_FINISHED", "ok\n"), err
    assert list(outside.iterdir()) == []          # nothing was created or mounted outside the rootfs


def test_resolve_in_root(tmp_path):
    root = tmp_path
    (root / "a").mkdir()
    (root / "a" / "up").symlink_to("../../../..")
    (root / "abs").symlink_to("/a")
    assert resolve_in_root(str(root), "/a/up/etc/passwd") == f"{root}/etc/passwd"
    assert resolve_in_root(str(root), "/abs/x") == f"{root}/a/x"
    assert resolve_in_root(str(root), "/../../x") == f"{root}/x"
    (root / "loop").symlink_to("loop")
    with pytest.raises(OSError, match="too many symlinks"):
        resolve_in_root(str(root), "/loop/x")


def test_a_relative_volume_lives_in_the_sandbox(corral, rootfs):
    mc = corral.sync()
    mc.launch("rel", ContainerConfig(argv=["/bin/sh", "-c", "echo kept > /cache/f"], rootfs=str(rootfs),
                                     volumes=["cache:/cache"]))
    assert mc.wait("rel").state == "TASK_FINISHED"
    assert open(os.path.join(mc.files("rel").sandbox, "cache", "f")).read() == "kept\n"
    mc.destroy("rel", remove_sandbox=True)


@pytest.mark.parametrize("volume, message", [
    ("/tmp:relative", "container path must be absolute"),
    ("../../escape:/x", "must stay in the sandbox"),
    ("/no/such/dir:/x", "does not exist"),
    ("/tmp:/x:rx", "use HOST:CONTAINER"),
    ("x:/", "a volume cannot be mounted at /$"),
    ("x:/proc/x", "a volume cannot be mounted at /proc/x"),
    ("x:/proc", "a volume cannot be mounted at /proc$"),
    ("x:/a/../proc/sys", "a volume cannot be mounted at /proc/sys"),
])
def test_bad_volumes(corral, rootfs, volume, message):
    with pytest.raises(InvalidInput, match=message):
        corral.sync().launch("bad", ContainerConfig(argv=["true"], rootfs=str(rootfs), volumes=[volume]))
    assert corral.sync().containers() == []


def test_volume_targets_that_cannot_work_are_bad_input_on_the_command_line(corral, rootfs):
    for volume in ("x:/", "x:/proc/x"):
        result = corral.run("run", "--rootfs", str(rootfs), "--volume", volume, "--", "/bin/true")
        assert (result.returncode, result.stderr) == (
            2, f"corral: invalid volume {volume!r}: a volume cannot be mounted at {volume[2:]}\n")
    assert corral.sync().containers() == [] and os.listdir(os.path.join(corral.work_dir, "containers")) == []


def test_a_setup_failure_reaches_the_user_with_its_step_and_cause(corral, rootfs):
    """init fails to mount a directory over a file: the user reads that, every time (init used to
    exit before the launcher had moved it into its cgroups, and the user read that move's ESRCH)."""
    for _ in range(3):
        result = corral.run("run", "--name", "setup", "--rootfs", str(rootfs), "--volume", "dir:/bin/busybox",
                            "--", "/bin/true")
        sandbox = os.path.join(corral.work_dir, "containers", "setup")
        assert (result.returncode, result.stderr) == (1, (
            "corral: REASON_CONTAINER_LAUNCH_FAILED: cannot set up the container: "
            f"cannot mount {sandbox}/dir at /bin/busybox: Not a directory\n"))
    mc = corral.sync()
    mc.launch("setup", ContainerConfig(argv=["/bin/true"], rootfs=str(rootfs), hostname="h",
                                       volumes=["dir:/bin/busybox"]))
    termination = mc.wait("setup")
    assert (termination.state, termination.reason) == ("TASK_FAILED", "REASON_CONTAINER_LAUNCH_FAILED")
    assert termination.message.startswith("cannot set up the container: cannot mount ")
    mc.destroy("setup", remove_sandbox=True)


def test_a_relative_volume_never_follows_a_link_out_of_a_kept_sandbox(corral, rootfs, tmp_path):
    """The first task of an id links its sandbox's `cache` to a host path; the sandbox is kept; a
    later container of that id asking for the volume cache:/cache must not get the host's files."""
    host = tmp_path / "host-only"
    host.mkdir()
    (host / "secret").write_text("host secret\n")
    mc = corral.sync()
    mc.launch("kept", ContainerConfig(argv=["/bin/sh", "-c", f"ln -s {host} /mnt/mesos/sandbox/cache"],
                                      rootfs=str(rootfs)))
    assert mc.wait("kept").state == "TASK_FINISHED"
    mc.destroy("kept")
    with pytest.raises(InvalidInput, match="a symlink there leads out of it"):
        mc.launch("kept", ContainerConfig(argv=["/bin/cat", "/cache/secret"], rootfs=str(rootfs),
                                          volumes=["cache:/cache"]))
    assert mc.containers() == []


def test_a_relative_rootfs_is_taken_from_the_current_directory(corral, rootfs):
    result = corral.run("run", "--rootfs", "rootfs", "--", "/bin/echo", "ok", cwd=rootfs.parent)
    assert (result.returncode, result.stdout, result.stderr) == (0, "ok\n", "")
    with pytest.raises(InvalidInput, match="give an absolute path"):
        ContainerConfig(argv=["/bin/true"], rootfs="rootfs")


def test_a_path_with_dotdot_resolves_beneath_while_the_host_renames(tmp_path):
    """openat2 with RESOLVE_BENEATH answers EAGAIN when any rename on the host races a ".."
    (the agent's READ_FILE of a sandbox link such as sub/../x): the resolution tries again
    instead of failing. Renames from a child process, for at most 2 s; 3000 resolutions."""
    from corral import linux
    (tmp_path / "sub").mkdir()
    (tmp_path / "x").write_text("x")
    churn = tmp_path / "churn"
    churn.mkdir()
    renamer = os.fork()
    if renamer == 0:
        a, b = str(churn / "a"), str(churn / "b")
        open(a, "w").close()
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            os.rename(a, b)
            os.rename(b, a)
        os._exit(0)
    top = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    try:
        for _ in range(3000):
            os.close(linux.resolve_beneath(top, "sub/../sub/../x"))
    finally:
        os.close(top)
        os.kill(renamer, signal.SIGKILL)
        os.waitpid(renamer, 0)
