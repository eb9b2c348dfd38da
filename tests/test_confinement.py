"""Confinement by default (issue 12), checked from inside real containers, with and without an
image: capabilities, no_new_privs, seccomp, the devices cgroup, masked and read-only paths,
the pids limit, rlimits; --privileged and each opt-out give the old behaviour back.

Nothing here can harm the host: devices are opened read-only and only to be refused, /proc/sys
is opened for writing without a write (a read-only mount refuses the open itself), fork loops
are bounded, and every mount happens in a container's private mount namespace.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap

import pytest

from tests.cgroupkit import outside_device
from corral.cgroups import hierarchies
from corral.isolators.capabilities import DEFAULT, NUMBERS
from corral.isolators.registry import CONFINEMENT, DEFAULT_ISOLATION

PYTHON = sys.executable                     # the host's interpreter: runs in a container without an image
DEFAULT_MASK = sum(1 << NUMBERS[name] for name in DEFAULT)
ALL_ON = ",".join(DEFAULT_ISOLATION)


def without(*names: str) -> str:
    return ",".join(n for n in DEFAULT_ISOLATION if n not in names)


@pytest.fixture
def rootfs(tmp_path):
    """A busybox root filesystem, as an image's would be."""
    root = tmp_path / "rootfs"
    for d in ("bin", "etc", "tmp"):
        (root / d).mkdir(parents=True)
    shutil.copy("/bin/busybox", root / "bin" / "busybox")
    for applet in ("sh", "cat", "grep", "mknod", "mount", "wc", "id", "ls", "sleep", "stat", "unshare"):
        (root / "bin" / applet).symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n")
    return root


def run(corral, script: str, *options: str, python: bool = False) -> subprocess.CompletedProcess:
    """Run `script` (sh, or with python=True the host's python) in a container; its result."""
    argv = [PYTHON, "-c", script] if python else ["/bin/sh", "-c", script]
    return corral.run("run", *options, "--", *argv)


def status_fields(text: str) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def root_disk() -> tuple[int, int]:
    """major:minor of the block device holding the host's root filesystem (or of the first disk)."""
    dev = os.stat("/").st_dev
    if os.major(dev):
        return os.major(dev), os.minor(dev)
    for name in sorted(os.listdir("/sys/block")):
        if not name.startswith(("loop", "ram", "zram")):
            major, minor = open(f"/sys/block/{name}/dev").read().split(":")
            return int(major), int(minor)
    pytest.skip("no block device on this host")


# -- the defaults ------------------------------------------------------------------------------

@pytest.mark.parametrize("with_rootfs", [False, True], ids=["host-fs", "rootfs"])
def test_default_capabilities_nnp_and_seccomp(corral, rootfs, with_rootfs):
    options = ("--rootfs", str(rootfs)) if with_rootfs else ()
    result = run(corral, "cat /proc/self/status", *options)
    assert result.returncode == 0, result.stderr
    fields = status_fields(result.stdout)
    for name in ("CapEff", "CapPrm", "CapBnd"):
        assert int(fields[name], 16) == DEFAULT_MASK, (name, fields[name])
    assert int(fields["CapInh"], 16) == 0 and int(fields["CapAmb"], 16) == 0
    assert fields["NoNewPrivs"] == "1"
    assert fields["Seccomp"] == "2"


def test_default_confinement_in_an_image(corral, tmp_path):
    from corral.provisioner.localimage import write_busybox_tarball
    write_busybox_tarball(str(tmp_path / "images"))
    result = run(corral, "cat /proc/self/status; /bin/busybox mount -t tmpfs none /tmp; echo mount=$?",
                 "--docker-registry", str(tmp_path / "images"), "--image", "busybox")
    assert result.returncode == 0, result.stderr
    fields = status_fields(result.stdout)
    assert int(fields["CapEff"], 16) == DEFAULT_MASK and int(fields["CapBnd"], 16) == DEFAULT_MASK
    assert fields["NoNewPrivs"] == "1" and fields["Seccomp"] == "2"
    assert "mount=1" in result.stdout


def test_non_root_user_has_no_effective_capabilities(corral):
    result = run(corral, "grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status", "--user", "nobody")
    fields = status_fields(result.stdout)
    assert int(fields["CapEff"], 16) == 0 and int(fields["CapPrm"], 16) == 0
    assert int(fields["CapBnd"], 16) == DEFAULT_MASK


@pytest.mark.parametrize("with_rootfs", [False, True], ids=["host-fs", "rootfs"])
def test_mounting_a_tmpfs_fails(corral, rootfs, with_rootfs):
    options = ("--rootfs", str(rootfs)) if with_rootfs else ()
    target = "/tmp" if with_rootfs else "$MESOS_SANDBOX"
    result = run(corral, f"mount -t tmpfs none {target}; echo mount=$?; grep -c ' {target} .* tmpfs ' "
                 "/proc/self/mountinfo", *options)
    assert "mount=0" not in result.stdout and "mount=" in result.stdout, result


MKNOD_AND_OPEN = """
import os, sys
major, minor = map(int, sys.argv[1:3])
node = os.path.join(os.environ["MESOS_SANDBOX"], "disk")
try:
    os.mknod(node, 0o600 | 0o060000, os.makedev(major, minor))
    print("mknod ok")
    try:
        os.close(os.open(node, os.O_RDONLY))
        print("open ok")
    except OSError as e:
        print("open", e.errno)
finally:
    if os.path.exists(node):
        os.unlink(node)
"""


def test_mknod_of_the_host_disk_cannot_be_opened(corral):
    major, minor = root_disk()
    result = corral.run("run", "--", PYTHON, "-c", MKNOD_AND_OPEN, str(major), str(minor))
    assert "mknod ok" in result.stdout, result          # mknod is allowed, as in Docker ...
    assert "open 1" in result.stdout, result            # ... but the node cannot be opened: EPERM


def test_mknod_of_the_host_disk_in_a_rootfs_cannot_be_opened(corral, rootfs):
    major, minor = root_disk()
    result = run(corral, f"mknod /tmp/disk b {major} {minor} && echo mknod ok; "
                 "cat /tmp/disk > /dev/null 2>&1 </dev/null && echo open ok || echo open refused",
                 "--rootfs", str(rootfs))
    assert "mknod ok" in result.stdout and "open refused" in result.stdout, result


def test_host_devices_outside_the_list_are_refused(corral):
    """Without an image the host's /dev is there: its nodes open only if the list allows them."""
    device = outside_device()[0]
    script = (f"import os\nfor p in ('/dev/null', '{device}'):\n"
              "    try: os.close(os.open(p, os.O_RDONLY)); print(p, 'ok')\n"
              "    except OSError as e: print(p, e.errno)")
    result = run(corral, script, python=True)
    assert "/dev/null ok" in result.stdout and f"{device} 1" in result.stdout, result
    allowed = run(corral, script, "--device", f"{device}:r", python=True)
    assert f"{device} ok" in allowed.stdout, allowed


def test_device_node_made_in_the_containers_dev(corral, rootfs):
    device, major, minor = outside_device()
    result = run(corral, "ls -l /dev/lc; : </dev/lc; echo open=$?",
                 "--rootfs", str(rootfs), "--device", f"{device}:/dev/lc:r")
    assert result.stdout.startswith("c") and re.search(rf"\b{major}, +{minor}\b", result.stdout), result
    # Read-only access: the open for reading gets past the devices cgroup (the driver answers).
    assert "open=" in result.stdout


@pytest.mark.parametrize("with_rootfs", [False, True], ids=["host-fs", "rootfs"])
def test_masked_and_read_only_proc(corral, rootfs, with_rootfs):
    options = ("--rootfs", str(rootfs)) if with_rootfs else ()
    result = run(corral, "wc -c < /proc/keys; wc -c < /proc/timer_list; ls /sys/firmware | wc -l; "
                 "grep -E ' /proc/(sys|sysrq-trigger|irq|bus|fs) ' /proc/self/mountinfo", *options)
    lines = result.stdout.split("\n")
    assert lines[:3] == ["0", "0", "0"], result           # masked: empty
    readonly = {line.split()[4]: line.split()[5] for line in lines[3:] if line}
    assert readonly.get("/proc/sys", "").startswith("ro,"), readonly
    if os.path.exists("/proc/sysrq-trigger"):
        assert readonly.get("/proc/sysrq-trigger", "").startswith("ro,"), readonly


def test_proc_sys_refuses_an_open_for_writing(corral):
    # The open itself fails on a read-only mount: nothing is ever written.
    script = ("import os\ntry: os.open('/proc/sys/kernel/core_pattern', os.O_WRONLY); print('opened')\n"
              "except OSError as e: print(e.errno)")
    result = run(corral, script, python=True)
    assert result.stdout.strip() == "30", result          # EROFS


@pytest.fixture
def setuid_id():
    """A setuid-root copy of id(1) where the user nobody can reach it."""
    directory = tempfile.mkdtemp(prefix="corral-suid-")
    try:
        os.chmod(directory, 0o755)
        path = os.path.join(directory, "id")
        shutil.copy("/usr/bin/id", path)
        os.chmod(path, 0o4755)
        yield path
    finally:
        shutil.rmtree(directory)


def test_setuid_binary_stays_unprivileged(corral, setuid_id):
    confined = corral.run("run", "--user", "nobody", "--", setuid_id)
    assert "uid=65534" in confined.stdout and "euid=0" not in confined.stdout, confined
    # Without linux/nnp (and its seccomp filter) the same binary does raise privileges: the check above can fail.
    unconfined = corral.run("run", "--user", "nobody", "--isolation", without("linux/nnp", "linux/seccomp"),
                            "--", setuid_id)
    assert "euid=0" in unconfined.stdout, unconfined


def test_seccomp_refuses_a_user_namespace(corral):
    # unshare(CLONE_NEWUSER) needs no capability: only the seccomp filter refuses it.
    script = ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
              "print(libc.unshare(0x10000000), ctypes.get_errno())")
    allowed = run(corral, script, "--seccomp-profile", "unconfined", python=True)
    if allowed.stdout.split()[0] != "0":
        pytest.skip(f"this kernel refuses root a user namespace without any filter: {allowed.stdout.strip()}")
    assert run(corral, script, python=True).stdout.split() == ["-1", "1"]


def test_seccomp_profile_file(corral, tmp_path):
    profile = tmp_path / "no-mkdir.json"
    profile.write_text('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], '
                       '"action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}')
    result = run(corral, "mkdir $MESOS_SANDBOX/d 2>/dev/null; echo mkdir=$?; grep Seccomp: /proc/self/status",
                 "--seccomp-profile", str(profile))
    assert "mkdir=1" in result.stdout and "Seccomp:\t2" in result.stdout, result


def test_pids_limit_stops_a_bounded_fork_bomb(corral):
    bomb = ("import os, time\nkids, refused = [], 0\nfor _ in range(60):\n"
            "    try: pid = os.fork()\n    except BlockingIOError: refused += 1; continue\n"
            "    if pid == 0: time.sleep(60); os._exit(0)\n    kids.append(pid)\n"
            "print(len(kids), refused, flush=True)\ntime.sleep(60)")
    cid = corral.run("run", "--detach", "--pids-limit", "20", "--", PYTHON, "-c", bomb, check=True).stdout.strip()
    logs = ""
    for _ in range(200):
        logs = corral.run("logs", cid).stdout
        if logs:
            break
        subprocess.run(["sleep", "0.05"])
    made, refused = map(int, logs.split())
    assert made == 18 and refused == 42, logs        # init and python are 2 of the 20
    usage = corral.run("usage", cid, "--json", check=True).stdout
    assert '"processes": 20' in usage, usage
    corral.run("destroy", cid, check=True)


def test_ulimit(corral):
    result = run(corral, "ulimit -n; ulimit -Hn", "--ulimit", "nofile=1024:4096")
    assert result.stdout.split() == ["1024", "4096"], result


def test_cap_add_and_drop(corral):
    result = run(corral, "grep -E '^Cap(Eff|Bnd)' /proc/self/status", "--cap-add", "sys_admin",
                 "--cap-drop", "CAP_CHOWN")
    want = (DEFAULT_MASK | 1 << NUMBERS["SYS_ADMIN"]) & ~(1 << NUMBERS["CHOWN"])
    fields = status_fields(result.stdout)
    assert int(fields["CapEff"], 16) == want and int(fields["CapBnd"], 16) == want
    none = status_fields(run(corral, "grep CapEff /proc/self/status", "--cap-drop", "ALL").stdout)
    assert int(none["CapEff"], 16) == 0


# -- giving it back ----------------------------------------------------------------------------

def test_privileged_restores_the_old_behaviour(corral):
    result = run(corral, "cat /proc/self/status; grep -c ' /proc/keys ' /proc/self/mountinfo", "--privileged")
    fields = status_fields(result.stdout)
    ours = status_fields(open("/proc/self/status").read())      # what corral's caller has: all of it passes on
    assert int(fields["CapEff"], 16) == int(fields["CapBnd"], 16) == int(ours["CapBnd"], 16)
    assert fields["NoNewPrivs"] == "0" and fields["Seccomp"] == "0"
    assert result.stdout.rstrip().endswith("\n0")       # /proc/keys not masked


@pytest.mark.parametrize("left_out, field, value", [
    ("linux/capabilities", "CapBnd", None),
    ("linux/nnp", "NoNewPrivs", "0"),
    ("linux/seccomp", "Seccomp", "0"),
])
def test_each_isolator_left_out(corral, left_out, field, value):
    fields = status_fields(run(corral, "cat /proc/self/status", "--isolation", without(left_out)).stdout)
    if value is None:
        assert int(fields[field], 16) != DEFAULT_MASK and fields["Seccomp"] == "2"
    else:
        assert fields[field] == value
        assert int(fields["CapEff"], 16) == DEFAULT_MASK


def test_masked_paths_and_devices_left_out(corral):
    script = ("import os\nprint(os.statvfs('/proc/sys').f_flag & os.ST_RDONLY)\n"
              f"try: os.close(os.open('{outside_device()[0]}', os.O_RDONLY)); print('ok')\n"
              "except OSError as e: print(e.errno)")
    result = run(corral, script, "--isolation", without("linux/masked_paths", "cgroups/devices"), python=True)
    assert result.stdout.split() == ["0", "ok"], result


def test_confinement_isolators_are_on_by_default():
    assert set(CONFINEMENT) <= set(DEFAULT_ISOLATION)
    assert ALL_ON.count(",") == len(DEFAULT_ISOLATION) - 1


# -- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("options, message", [
    (("--cap-add", "NOT_A_CAP"), "unknown capability 'NOT_A_CAP'"),
    (("--cap-drop", ""), "unknown capability"),
    (("--device", "/dev/does-not-exist"), "device /dev/does-not-exist"),
    (("--device", "/etc/passwd"), "not a character or block device"),
    (("--device", "/dev/null:/dev/x:rwq"), "invalid device"),
    (("--device", "dev/null"), "must be absolute"),
    (("--ulimit", "nofile=10:x"), "invalid ulimit"),
    (("--ulimit", "nosuch=1"), "invalid ulimit"),
    (("--pids-limit", "0"), "the pids limit must be an integer from 1 to 4194304"),
    (("--seccomp-profile", "/nonexistent.json"), "no such file"),
])
def test_bad_confinement_input_is_one_line_and_exit_2(corral, options, message):
    result = run(corral, "true", *options)
    assert result.returncode == 2 and message in result.stderr and result.stderr.count("\n") == 1, result
    assert not corral.sync().containers()


@pytest.mark.parametrize("profile, message", [
    ("{", "not JSON"),
    ('{"defaultAction": "SCMP_ACT_NOPE"}', "defaultAction"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "BAD"}]}', "unknown action"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", '
     '"args": [{"index": 0, "op": "SCMP_CMP_WHAT"}]}]}', "bad argument condition"),
])
def test_bad_seccomp_profiles(corral, tmp_path, profile, message):
    path = tmp_path / "bad.json"
    path.write_text(profile)
    result = run(corral, "true", "--seccomp-profile", str(path))
    assert result.returncode == 2 and message in result.stderr and result.stderr.count("\n") == 1, result
    assert not corral.sync().containers()


def test_a_confinement_that_fails_is_the_containers_launch_failure(corral):
    # Raising a hard limit past the kernel's nr_open fails in init, before the task: reported, every time.
    for _ in range(5):
        result = run(corral, "true", "--ulimit", "nofile=10:99999999999")
        assert result.returncode == 1 and "REASON_CONTAINER_LAUNCH_FAILED" in result.stderr, result
    assert not corral.sync().containers()


def test_a_profile_is_compiled_once(corral):
    """The first launch compiles the default profile into the runtime dir's cache; later ones
    (a new `corral run` each) load it from there."""
    cache = os.path.join(corral.runtime_dir, "seccomp")
    assert run(corral, "true").returncode == 0
    [name] = os.listdir(cache)
    before = os.stat(os.path.join(cache, name)).st_mtime_ns
    result = run(corral, "grep Seccomp: /proc/self/status")
    assert result.stdout == "Seccomp:\t2\n" and os.listdir(cache) == [name]
    assert os.stat(os.path.join(cache, name)).st_mtime_ns == before


def test_the_launching_process_never_loads_libseccomp(corral):
    """A profile is compiled in a child process: the launching one (the CLI, the agent's launch
    server), which forks every later launch, takes in none of libseccomp and its imports; the
    task is filtered all the same."""
    script = textwrap.dedent(f"""
        import sys
        from corral.containerizers.mesos.sync import SyncMesosContainerizer
        from corral.types import ContainerConfig
        mc = SyncMesosContainerizer({corral.work_dir!r}, {corral.runtime_dir!r}, {corral.cgroups_root!r})
        mc.launch("filtered", ContainerConfig(argv=["/bin/grep", "Seccomp:", "/proc/self/status"]))
        mc.wait("filtered")
        print(open(mc.files("filtered").stdout).read().strip(), "pyseccomp" in sys.modules, "threading" in sys.modules)
        mc.destroy("filtered", remove_sandbox=True)
    """)
    assert not os.path.exists(os.path.join(corral.runtime_dir, "seccomp"))     # compiled by this launch
    result = subprocess.run([PYTHON, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["Seccomp:", "2", "False", "False"], result


@pytest.mark.parametrize("tracking", ["unified", "freezer"])
def test_devices_are_confined_whatever_the_tracking(corral, tracking):
    """The device program sits on the container's cgroup2 cgroup: with the launcher tracking in
    the v1 freezer instead, the isolator places init there itself, and removes the cgroup after."""
    from corral.types import ContainerConfig
    mc = corral.sync(tracking=tracking)
    if tracking == "freezer" and "freezer" not in hierarchies().v1:
        pytest.skip("needs the v1 freezer hierarchy of a v1 or hybrid host")
    script = f"import os\ntry: os.open('{outside_device()[0]}', os.O_RDONLY); print('ok')\nexcept OSError as e: print(e.errno)"
    mc.launch("dev", ContainerConfig(argv=[PYTHON, "-c", script]))
    mc.wait("dev")
    out = open(mc.files("dev").stdout).read()
    mc.destroy("dev", remove_sandbox=True)
    assert out == "1\n"
    assert not any(os.path.exists(os.path.join(top, "dev")) for top in corral.cgroup_dirs())
