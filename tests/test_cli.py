"""`corral run` and friends, as a user drives them: real processes, namespaces and cgroups."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from corral.types import STATISTICS_FIELDS

from tests.cgroupkit import cgroup_of, needs_hierarchy


def test_exit_code_and_output_streams(corral):
    result = corral.run("run", "--", "/bin/sh", "-c", "echo out; echo err >&2; exit 7")
    assert result.returncode == 7
    assert result.stdout == "out\n"
    assert result.stderr == "err\n"


def test_shell_option_and_argv_are_kept_apart(corral):
    assert corral.run("run", "--", "/bin/echo", "a  b", "$HOME").stdout == "a  b $HOME\n"
    assert corral.run("run", "--shell", "echo $((6 * 7))").stdout == "42\n"


def test_task_that_signals_itself_dies_of_that_signal(corral):
    # The task is not PID 1 of its namespace, so a default-action signal kills it as on the host.
    result = corral.run("run", "--", "/bin/sh", "-c", "kill -USR1 $$; sleep 5")
    assert result.returncode == 128 + signal.SIGUSR1


def test_pid_namespace_and_own_proc(corral):
    script = "echo $$; ls /proc | grep -c '^[0-9]'"
    pid, count = corral.run("run", "--shell", script, check=True).stdout.split()
    assert pid == "2"                  # init is 1; the task comes next
    assert int(count) <= 4             # init, sh, ls, grep: nothing of the host


def test_ipc_and_uts_namespaces(corral):
    host_ipc = os.readlink("/proc/self/ns/ipc")
    out = corral.run("run", "--hostname", "box", "--shell", "readlink /proc/self/ns/ipc; hostname",
                     check=True).stdout.split()
    assert out[0] != host_ipc
    assert out[1] == "box"
    assert os.uname().nodename != "box"


def test_sandbox_env_workdir_and_user(corral):
    out = corral.run("run", "--env", "GREETING=hi there", "--name", "envy", "--shell",
                     'echo "$GREETING"; echo "$MESOS_SANDBOX"; pwd', check=True).stdout.splitlines()
    sandbox = os.path.join(corral.work_dir, "containers", "envy")
    assert out == ["hi there", sandbox, sandbox]
    assert corral.run("run", "--workdir", "/tmp", "--", "pwd", check=True).stdout == "/tmp\n"
    assert corral.run("run", "--user", "nobody", "--", "id", "-u", check=True).stdout == "65534\n"


def test_cgroups_hold_the_task(corral):
    out = corral.run("run", "--name", "cg", "--cpus", "0.5", "--mem", "64M", "--",
                     "cat", "/proc/self/cgroup", check=True).stdout
    assert cgroup_of(out, "memory") == f"/{corral.cgroups_root}/cg"
    assert cgroup_of(out, "cpu") == f"/{corral.cgroups_root}/cg"


def test_limits_are_written_as_mesos_computes_them(corral):
    from corral.cgroups import cgroup_for
    cid = corral.run("run", "--detach", "--cpus", "0.25", "--mem", "1G", "--cgroups-enable-cfs",
                     "--", "sleep", "30", check=True).stdout.strip()
    cpu = cgroup_for("cpu", f"{corral.cgroups_root}/{cid}")
    mem = cgroup_for("memory", f"{corral.cgroups_root}/{cid}")
    if cpu.version == 1:
        assert cpu.read("cpu.shares").strip() == "256"
        assert cpu.read("cpu.cfs_quota_us").strip() == "25000"
        assert cpu.read("cpu.cfs_period_us").strip() == "100000"
    else:
        assert cpu.read("cpu.weight").strip() == "25"           # 100 per cpu
        assert cpu.read("cpu.max").strip() == "25000 100000"
    limit_file = "memory.limit_in_bytes" if mem.version == 1 else "memory.max"
    assert int(mem.read(limit_file)) == 1024 ** 3
    corral.run("destroy", cid, check=True)


def test_the_largest_limits_fit_the_kernel(corral):
    """cpus and mem at their bounds: shares within the kernel's range (cgroup v2's weight refuses
    more than 10000), and a memory limit that is the number asked, not wrapped past 2^64."""
    from corral.cgroups import cgroup_for
    from corral.cpu import MAX_CPU_SHARES, shares_for, weight_for
    from corral.types import MAX_CPUS, MAX_MEM_MB
    assert shares_for(MAX_CPUS) == MAX_CPU_SHARES and weight_for(MAX_CPUS) == weight_for(300) == 10000
    cid = corral.run("run", "--detach", "--cpus", str(MAX_CPUS), "--mem", str(MAX_MEM_MB), "--cgroups-enable-cfs",
                     "--", "sleep", "30", check=True).stdout.strip()
    cpu = cgroup_for("cpu", f"{corral.cgroups_root}/{cid}")
    mem = cgroup_for("memory", f"{corral.cgroups_root}/{cid}")
    if cpu.version == 1:
        assert cpu.read("cpu.shares").strip() == "262144"
        assert cpu.read("cpu.cfs_quota_us").strip() == str(MAX_CPUS * 100_000)
        assert int(mem.read("memory.limit_in_bytes")) == MAX_MEM_MB * 1024 * 1024
    else:
        assert cpu.read("cpu.weight").strip() == "10000"
        assert cpu.read("cpu.max").split() == [str(MAX_CPUS * 100_000), "100000"]
        assert mem.read("memory.max").strip() in ("max", str(MAX_MEM_MB * 1024 * 1024))
    corral.run("destroy", cid, check=True)


def test_oom_kill_is_a_memory_limitation(corral):
    hog = "x=$(head -c 300000000 /dev/zero | tr '\\0' a); echo survived"
    result = corral.run("run", "--mem", "48", "--shell", hog)
    assert result.returncode == 128 + signal.SIGKILL
    assert "survived" not in result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("corral: REASON_CONTAINER_LIMITATION_MEMORY: Memory limit exceeded: Requested: 48MB")
    assert "Maximum Used:" in last and "MEMORY STATISTICS:" in last

    cid = corral.run("run", "--detach", "--mem", "48", "--shell", hog, check=True).stdout.strip()
    termination = json.loads(corral.run("wait", cid, "--json", check=True).stdout)
    assert termination["state"] == "TASK_FAILED"
    assert termination["reason"] == "REASON_CONTAINER_LIMITATION_MEMORY"
    assert termination["signal"] == signal.SIGKILL
    corral.run("destroy", cid, check=True)


def test_cfs_quota_throttles_a_busy_loop(corral):
    started = time.monotonic()
    cid = corral.run("run", "--detach", "--cpus", "0.2", "--cgroups-enable-cfs", "--shell", "while :; do :; done",
                     check=True).stdout.strip()
    time.sleep(1.5)
    usage = json.loads(corral.run("usage", cid, "--json", check=True).stdout)
    ran = time.monotonic() - started      # the loop's time, at most: longer than 1.5 s on a slow host
    corral.run("destroy", cid, check=True)
    assert set(STATISTICS_FIELDS) <= set(usage)
    assert usage["cpus_limit"] == pytest.approx(0.2)
    assert usage["cpus_nr_throttled"] > 5
    assert usage["cpus_throttled_time_secs"] > 0.5
    used = usage["cpus_user_time_secs"] + usage["cpus_system_time_secs"]
    assert used < 0.2 * ran + 0.15      # it would be ~1.5 s unthrottled
    assert usage["processes"] == 2      # init and the shell


# A tree that forks, double-forks away, ignores SIGTERM and stops itself.
STUBBORN = """
trap '' TERM
sh -c 'trap "" TERM; sleep 1000' &
( setsid sh -c 'sleep 1000' & ) &
sh -c 'kill -STOP $$; sleep 1000' &
echo ready
wait
"""


def _wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("tracking", [pytest.param("unified", marks=needs_hierarchy("unified")),
                                      pytest.param("freezer", marks=needs_hierarchy("freezer"))])
def test_destroy_kills_a_stubborn_tree(corral, tracking):
    mc = corral.sync(tracking=tracking)
    from corral.types import ContainerConfig
    mc.launch("stubborn", ContainerConfig(argv=["/bin/sh", "-c", STUBBORN]))
    files = mc.files("stubborn")
    assert _wait_for(lambda: os.path.exists(files.stdout) and open(files.stdout).read() == "ready\n")
    # All six up, the self-stopped one stopped (it may fork before it stops itself).
    assert _wait_for(lambda: len(mc.launcher.pids("stubborn")) >= 6
                     and any(_state(pid) == "T" for pid in mc.launcher.pids("stubborn")))
    pids = mc.launcher.pids("stubborn")

    mc.kill("stubborn", signal.SIGTERM)                    # ignored by all of them
    time.sleep(0.3)
    assert all(_alive(pid) for pid in pids)

    termination = mc.destroy("stubborn", remove_sandbox=True)
    assert termination.state == "TASK_KILLED"
    assert not [pid for pid in pids if _alive(pid)]
    assert not corral.cgroup_dirs() or not any(
        os.path.exists(os.path.join(top, "stubborn")) for top in corral.cgroup_dirs())
    assert mc.containers() == []


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def _alive(pid: int) -> bool:
    return _state(pid) not in (None, "Z")


def test_wait_kill_destroy_from_other_processes(corral):
    cid = corral.run("run", "--detach", "--name", "shared", "--", "sleep", "1000", check=True).stdout
    assert cid == "shared\n"                               # --detach prints only the id
    waiter = corral.popen("wait", "shared", "--json")
    time.sleep(0.3)
    assert waiter.poll() is None                           # still waiting
    ps = json.loads(corral.run("ps", "--json", check=True).stdout)
    assert [(c["container_id"], c["state"]) for c in ps] == [("shared", "RUNNING")]

    assert corral.run("kill", "shared", "--signal", "INT").returncode == 0
    out, err = waiter.communicate(timeout=10)
    termination = json.loads(out)
    assert termination == {"container_id": "shared", "exit_status": signal.SIGINT, "exit_code": None,
                           "signal": signal.SIGINT, "state": "TASK_KILLED", "reason": None,
                           "message": termination["message"]}
    assert "SIGINT" in termination["message"]
    # Ended but not destroyed: still listed, still waitable.
    assert corral.run("wait", "shared", check=True).stdout == f"{128 + signal.SIGINT}\n"
    assert corral.run("destroy", "shared", check=True).stdout == "shared\n"
    assert corral.run("ps", "--json", check=True).stdout.strip() == "[]"
    assert not os.path.exists(os.path.join(corral.work_dir, "containers", "shared"))


def test_logs_and_follow(corral):
    cid = corral.run("run", "--detach", "--shell", "echo one; echo bad >&2; sleep 0.5; echo two",
                     check=True).stdout.strip()
    follow = corral.run("logs", "--follow", cid, check=True)
    assert follow.stdout == "one\ntwo\n"
    assert corral.run("logs", cid, "--stderr", check=True).stdout == "bad\n"
    corral.run("destroy", cid, check=True)


def test_global_options_before_or_after_the_subcommand(corral):
    env_free = dict(corral.env)
    for key in ("CORRAL_WORK_DIR", "CORRAL_RUNTIME_DIR", "CORRAL_CGROUPS_ROOT"):
        env_free.pop(key)
    opts = ["--work-dir", corral.work_dir, "--runtime-dir", corral.runtime_dir, "--cgroups-root", corral.cgroups_root]
    import subprocess
    subprocess.run([corral.executable, *opts, "run", "--detach", "--name", "before", "--", "sleep", "100"],
                   env=env_free, check=True, capture_output=True)
    listed = subprocess.run([corral.executable, "ps", "--json", *opts], env=env_free, check=True, capture_output=True)
    assert [c["container_id"] for c in json.loads(listed.stdout)] == ["before"]
    corral.run("destroy", "before", check=True)


def test_foreground_run_forwards_sigterm(corral):
    proc = corral.popen("run", "--shell", "trap 'echo got TERM; exit 3' TERM; echo up; while :; do sleep 0.05; done")
    assert proc.stdout.readline() == "up\n"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    assert out == "got TERM\n"
    assert proc.returncode == 3


@pytest.mark.parametrize("args, message", [
    (["run", "--cpus", "-1", "--", "true"], "must be a positive number"),
    (["run", "--cpus", "lots", "--", "true"], "not a number"),
    (["run", "--mem", "12X", "--", "true"], "not a size"),
    (["run", "--cpus", "1e308", "--", "true"], "cpus must be a positive number at most 65536, not 1e+308"),
    (["run", "--cpus", "1e30", "--", "true"], "cpus must be a positive number at most 65536"),
    (["run", "--cpus", "nan", "--", "true"], "cpus must be a positive number"),
    (["run", "--cpus", "inf", "--", "true"], "cpus must be a positive number"),
    (["run", "--mem", "16777216T", "--", "true"], "--mem: must be more than 0 and at most 8 EiB: '16777216T'"),
    (["run", "--mem", "9" * 400, "--", "true"], "at most 8 EiB"),
    (["run", "--mem", "0", "--", "true"], "must be more than 0"),
    (["run", "--hostname", "h" * 65, "--", "true"], "invalid hostname 'hhhh"),
    (["run", "--hostname", "two words", "--", "true"], "invalid hostname 'two words'"),
    (["run", "--hostname=-x", "--", "true"], "invalid hostname '-x'"),
    (["run", "--isolation", "cgroups/cpu,cgroups/nope", "--", "true"], "unknown isolator 'cgroups/nope'"),
    (["run", "--env", "NOEQUALS", "--", "true"], "--env wants K=V"),
    (["run", "--name", "../escape", "--", "true"], "invalid container id"),
    (["run"], "no command"),
    (["run", "--shell", "true", "--", "true"], "either --shell"),
    (["run", "--user", "no-such-user-here", "--", "true"], "no such user"),
    (["run", "--workdir", "/no/such/dir", "--", "true"], "is not a directory"),
    (["kill", "x", "--signal", "SIGNOPE"], "invalid signal"),
    (["kill", "x", "--signal", "\u00b2"], "invalid signal '\u00b2'"),
    (["run", "--pids-limit", "5000000", "--", "true"], "the pids limit must be an integer from 1 to 4194304"),
    (["run", "--pids-limit", "9" * 23, "--", "true"], "the pids limit must be an integer from 1 to 4194304"),
    (["run", "--pids-limit", "\u00b2", "--", "true"], "--pids-limit: not a whole number"),
    (["run", "--ulimit", "nofile=\u00b2", "--", "true"], "invalid ulimit 'nofile=\u00b2'"),
    (["run", "--external-containerizer-timeout", "1e308", "--", "true"], "must be more than 0 and at most 604800"),
    (["run", "--workdir", "../..", "--", "pwd"], "a relative workdir is in the sandbox, and '..' may not leave it"),
    (["run", "--workdir", "a/../../b", "--", "pwd"], "may not leave it"),
    (["run", "--image", "", "--", "true"], "--image needs an image reference"),
    (["--work-dir", "", "ps"], "--work-dir: must name a directory"),
    (["ps", "--runtime-dir", ""], "--runtime-dir: must name a directory"),
    (["frobnicate"], "invalid choice"),
    (["ps", "--", "x"], "only for corral run"),
])
def test_bad_input_is_one_line_and_exit_2(corral, args, message):
    result = corral.run(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert corral.sync().containers() == []


@pytest.mark.parametrize("command", ["wait", "kill", "destroy", "usage", "logs"])
def test_unknown_container_is_exit_1(corral, command):
    result = corral.run(command, "ghost")
    assert (result.returncode, result.stderr) == (1, "corral: no such container: ghost\n")


def test_duplicate_name_and_missing_command(corral):
    corral.run("run", "--detach", "--name", "twice", "--", "sleep", "100", check=True)
    again = corral.run("run", "--name", "twice", "--", "true")
    assert (again.returncode, again.stderr) == (1, "corral: container already exists: twice\n")
    corral.run("destroy", "twice", check=True)
    missing = corral.run("run", "--", "/no/such/program")
    assert missing.returncode == 127
    assert missing.stderr.strip().endswith(
        "REASON_CONTAINER_LAUNCH_FAILED: failed to execute '/no/such/program': No such file or directory")


def test_foreground_run_into_a_closed_pipe_removes_the_container(corral):
    import subprocess
    # `yes` would run for ever; once `head` has its line, corral's stdout is a broken pipe.
    pipeline = subprocess.run(f"{corral.executable} run --name endless -- yes | head -1", shell=True, env=corral.env,
                              capture_output=True, text=True, timeout=30)
    assert pipeline.stdout == "y\n"
    assert corral.sync().containers() == []


def test_without_a_pid_namespace_orphans_are_still_destroyed(corral):
    cid = corral.run("run", "--detach", "--isolation", "cgroups/mem", "--shell",
                     "(setsid sleep 1000 &); echo $$; sleep 1000", check=True).stdout.strip()
    mc = corral.sync()
    stdout = mc.files(cid).stdout
    assert _wait_for(lambda: len(mc.launcher.pids(cid)) >= 3 and open(stdout).read().endswith("\n"))
    pids = mc.launcher.pids(cid)
    out = open(stdout).read().strip()
    assert int(out) > 2 and int(out) in pids          # the host's pid: no namespace of its own
    corral.run("destroy", cid, check=True)
    assert not [pid for pid in pids if _alive(pid)]


def test_stop_and_continue_the_whole_container(corral):
    cid = corral.run("run", "--detach", "--shell", "sleep 1000 & sleep 1000", check=True).stdout.strip()
    mc = corral.sync()
    assert _wait_for(lambda: len(mc.launcher.pids(cid)) == 4)
    corral.run("kill", cid, "--signal", "STOP", check=True)
    assert _wait_for(lambda: all(_state(p) == "T" for p in mc.launcher.pids(cid)))
    corral.run("kill", cid, "--signal", "CONT", check=True)
    assert _wait_for(lambda: all(_state(p) == "S" for p in mc.launcher.pids(cid)))
    assert json.loads(corral.run("ps", "--json", check=True).stdout)[0]["state"] == "RUNNING"
    corral.run("destroy", cid, check=True)


def test_docker_networking_asked_of_the_mesos_containerizer_is_bad_input(corral):
    result = corral.run("run", "--network", "bridge", "--", "true")
    assert result.returncode == 2 and "need --containerizer docker" in result.stderr
    assert corral.sync().containers() == []


def _escapes_into(tmp_path) -> list[str]:
    """Bad cgroups roots that, were they taken, would land in this test's own tmp dir and nowhere
    else: an absolute path, and '..' steps from the cgroup mounts down into it."""
    from corral.cgroups import hierarchies
    target = tmp_path / "cgroups-root"
    roots = [str(target)]
    ups = {os.path.relpath(target, m) for m in hierarchies().mount_points}
    if len(ups) == 1:      # every mount equally deep: one '..' path reaches the tmp dir from all
        roots.append(ups.pop())
    return roots


def test_a_cgroups_root_is_a_relative_name_of_plain_components(corral, tmp_path):
    """Refused before anything is touched, from the flag, the environment and the library alike."""
    import subprocess
    from corral.containerizers.mesos.sync import SyncMesosContainerizer
    from corral.types import InvalidInput
    bad = _escapes_into(tmp_path) + ["", "a//b", "corral/.", "corral/", "x\ny"]
    for root in bad:
        by_flag = corral.run("--cgroups-root", root, "run", "--", "true")
        by_env = subprocess.run([corral.executable, "run", "--", "true"], capture_output=True, text=True,
                                env=dict(corral.env, CORRAL_CGROUPS_ROOT=root), timeout=60)
        for result in (by_flag, by_env):
            assert result.returncode == 2, (root, result.stderr)
            assert result.stderr.startswith(f"corral: argument --cgroups-root: invalid cgroups root {root!r}")
            assert result.stderr.count("\n") == 1
    for root in bad + ["x\0y"]:
        with pytest.raises(InvalidInput, match="invalid cgroups root"):
            SyncMesosContainerizer(corral.work_dir, corral.runtime_dir, root)
    assert not (tmp_path / "cgroups-root").exists()
    assert not os.path.exists(os.path.join(corral.runtime_dir, "containers"))
    corral.run("--cgroups-root", f"{corral.cgroups_root}/nested.name_1", "ps", check=True)   # nested names are fine


def test_logs_never_follow_a_link_the_task_put_in_place_of_its_output(corral, tmp_path):
    """The task replaces its stdout with a link to a host file (root's, say) and its stderr with a
    FIFO: `corral logs`, which runs as root, refuses both in one line and prints nothing of them."""
    secret = tmp_path / "secret"
    secret.write_text("host secret\n")
    cid = corral.run("run", "--detach", "--shell", f"rm stdout stderr; ln -s {secret} stdout; mkfifo stderr",
                     check=True).stdout.strip()
    assert corral.run("wait", cid, check=True).stdout == "0\n"
    for args in (["logs", cid], ["logs", "--follow", cid], ["logs", "--stderr", cid]):
        result = corral.run(*args, timeout=10)
        assert result.returncode == 1 and result.stdout == "", (args, result.stdout)
        assert "is not a regular file" in result.stderr and result.stderr.count("\n") == 1
    corral.run("destroy", cid, check=True)
    assert secret.read_text() == "host secret\n"


def test_a_kept_sandbox_with_a_planted_link_is_not_written_through(corral, tmp_path):
    """A container's sandbox outlives it (destroy without removing it); a task of the same id later
    must not have its output appended, as root, to wherever the first task's link pointed."""
    from corral.containerizers.mesos.launcher import LaunchFailed
    from corral.types import ContainerConfig
    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    mc = corral.sync()
    mc.launch("kept", ContainerConfig(argv=["/bin/sh", "-c", f"rm stdout; ln -s {victim} stdout"]))
    assert mc.wait("kept").exit_code == 0
    mc.destroy("kept")
    with pytest.raises(LaunchFailed, match="stdout is not a regular file"):
        mc.launch("kept", ContainerConfig(argv=["/bin/echo", "written as root"]))
    assert victim.read_text() == "untouched\n"
    assert mc.containers() == []
