"""`corral exec` into Mesos containers, as a user drives it: real namespaces, cgroups, confinement
and pseudo-terminals."""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import time

import pytest

from tests.ptykit import PtySession, is_raw


@pytest.fixture
def detached(corral):
    """Containers started with `corral run --detach`, destroyed with `corral destroy` at the end."""
    names = []

    def start(*options: str) -> str:
        name = f"c{len(names)}"
        corral.run("run", "--detach", "--name", name, *options, "--", "sleep", "1000", check=True)
        names.append(name)
        return name
    yield start
    for name in names:
        corral.run("destroy", name)


def _init_pid(corral, name: str) -> int:
    with open(os.path.join(corral.runtime_dir, "containers", name, "pids.json")) as f:
        return json.load(f)["init"]["pid"]


def _task_pid(corral, name: str) -> int:
    """The task: init's one child, once init has started it."""
    init = _init_pid(corral, name)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with open(f"/proc/{init}/task/{init}/children") as f:
            children = f.read().split()
        if children:
            return int(children[0])
        time.sleep(0.01)
    raise AssertionError(f"init {init} of {name} started no task")


def _status_fields(text: str) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def _exec(corral, name: str, *command: str, options=(), **kwargs):
    return corral.run("exec", *options, name, "--", *command, **kwargs)


def test_exec_runs_in_the_containers_namespaces(corral, detached):
    name = detached("--hostname", "box")
    init = _init_pid(corral, name)
    result = _exec(corral, name, "sh", "-c", "for ns in pid mnt uts ipc net; do readlink /proc/self/ns/$ns; done; "
                                             "hostname; echo $$; ls /proc | grep -c '^[0-9]'")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    assert lines[:5] == [os.readlink(f"/proc/{init}/ns/{ns}") for ns in ("pid", "mnt", "uts", "ipc", "net")]
    assert lines[0] != os.readlink("/proc/self/ns/pid") and lines[1] != os.readlink("/proc/self/ns/mnt")
    assert lines[5] == "box"
    assert int(lines[6]) > 2                         # init is 1, the task 2: exec comes after them
    assert int(lines[7]) <= 6                        # init, the task, sh, ls, grep: nothing of the host


def test_exec_sees_the_images_root_filesystem_and_users(corral, detached, tmp_path):
    from corral.provisioner.localimage import write_busybox_tarball
    write_busybox_tarball(str(tmp_path / "images"))
    name = detached("--docker-registry", str(tmp_path / "images"), "--image", "busybox")
    init = _init_pid(corral, name)
    result = _exec(corral, name, "sh", "-c", "ls /; cat /proc/1/status | grep ^Pid; id -u")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:-3] == sorted(os.listdir(f"/proc/{init}/root"))
    assert result.stdout.split()[-3:] == ["Pid:", "1", "0"]
    assert not os.path.exists(f"/proc/{init}/root/work")        # not the host's root
    # --user is looked up in the container's /etc/passwd
    nobody = _exec(corral, name, "sh", "-c", "id -u; echo $HOME $USER", options=("--user", "nobody"))
    with open(f"/proc/{init}/root/etc/passwd") as f:
        home = next(line.split(":")[5] for line in f if line.startswith("nobody:")) or "/"
    assert nobody.stdout.split() == ["65534", home, "nobody"], nobody
    missing = _exec(corral, name, "true", options=("--user", "no-such-user"))
    assert missing.returncode == 126 and "no-such-user" in missing.stderr and len(missing.stderr.splitlines()) == 1


def test_exec_has_the_tasks_environment_and_working_directory(corral, detached):
    name = detached("--env", "GREETING=hello", "--workdir", "/tmp")
    result = _exec(corral, name, "sh", "-c", 'echo "$GREETING $EXTRA $MESOS_SANDBOX"; pwd',
                   options=("--env", "EXTRA=more"))
    sandbox = os.path.join(corral.work_dir, "containers", name)
    assert result.stdout.splitlines() == [f"hello more {sandbox}", "/tmp"]
    assert _exec(corral, name, "pwd", options=("--workdir", "/")).stdout == "/\n"
    assert _exec(corral, name, "id", "-u", options=("--user", "nobody")).stdout == "65534\n"


def test_exec_is_confined_as_the_task(corral, detached):
    for options in ((), ("--cap-drop", "ALL")):
        name = detached(*options)
        with open(f"/proc/{_task_pid(corral, name)}/status") as f:
            task = _status_fields(f.read())
        result = _exec(corral, name, "cat", "/proc/self/status")
        assert result.returncode == 0, result.stderr
        ours = _status_fields(result.stdout)
        for field in ("CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb", "NoNewPrivs", "Seccomp", "Seccomp_filters"):
            assert ours[field] == task[field], field
        assert ours["NoNewPrivs"] == "1" and ours["Seccomp"] == "2"
        if options:
            assert int(ours["CapEff"], 16) == 0 and int(ours["CapBnd"], 16) == 0


def test_exec_has_the_tasks_rlimits(corral, detached):
    name = detached("--ulimit", "nofile=123:456")
    assert _exec(corral, name, "sh", "-c", "ulimit -Sn; ulimit -Hn").stdout.split() == ["123", "456"]


def test_exec_is_in_every_cgroup_of_the_container(corral, detached):
    name = detached("--mem", "64", "--pids-limit", "50")
    init = _init_pid(corral, name)
    with open(f"/proc/{init}/cgroup") as f:
        expected = sorted(f.read().splitlines())
    result = _exec(corral, name, "cat", "/proc/self/cgroup")
    assert sorted(result.stdout.splitlines()) == expected
    assert any(name in line for line in expected)


def test_exec_counts_against_the_containers_memory_limit(corral, detached):
    # 300 MB held by tail (no newline in /dev/zero: it keeps everything) in a 64 MB container:
    # the container's OOM killer ends it, where the host would not have.
    name = detached("--mem", "64")
    result = _exec(corral, name, "sh", "-c", "head -c 300M /dev/zero | tail; echo tail=$?", timeout=120)
    assert result.stdout.strip() == f"tail={128 + signal.SIGKILL}", result


def test_destroy_ends_the_containers_execs(corral, detached):
    name = detached()
    execution = corral.popen("exec", name, "--", "sleep", "1000")
    deadline = time.monotonic() + 20
    while len(corral.sync().launcher.pids(name)) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(corral.sync().launcher.pids(name)) == 3            # init, the task, the exec
    corral.run("destroy", name, check=True)
    assert execution.wait(timeout=20) == 128 + signal.SIGKILL


def test_a_signal_to_exec_ends_the_commands_children_too(corral, detached):
    """SIGTERM to `corral exec` reaches the command's whole process group, as a terminal's ^C
    reaches a foreground job: a shell's background child does not live on in the container."""
    name = detached()
    execution = corral.popen("exec", name, "--", "sh", "-c", "sleep 1000 & sleep 1000")
    deadline = time.monotonic() + 20
    while len(corral.sync().launcher.pids(name)) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(corral.sync().launcher.pids(name)) == 5            # init, the task, sh and its two sleeps
    execution.send_signal(signal.SIGTERM)
    assert execution.wait(timeout=20) == 128 + signal.SIGTERM
    deadline = time.monotonic() + 5
    while len(corral.sync().launcher.pids(name)) > 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(corral.sync().launcher.pids(name)) == 2            # init and the task alone


def test_exit_codes_are_the_commands(corral, detached):
    name = detached()
    assert _exec(corral, name, "sh", "-c", "exit 7").returncode == 7
    assert _exec(corral, name, "sh", "-c", "kill -TERM $$").returncode == 128 + signal.SIGTERM
    missing = _exec(corral, name, "no-such-command")
    assert missing.returncode == 127 and missing.stderr == "corral: no-such-command: not found in the container's PATH\n"
    assert _exec(corral, name, "/etc/hostname").returncode == 126


def test_stdin_only_with_interactive(corral, detached):
    name = detached()
    assert _exec(corral, name, "cat", input="piped\n").stdout == ""
    assert _exec(corral, name, "cat", options=("-i",), input="piped\n").stdout == "piped\n"
    assert _exec(corral, name, "sh", "-c", "echo err >&2").stderr == "err\n"


def test_bad_input_is_one_line(corral, detached):
    name = detached()
    for options, command, code, words in (
            (("no-such-id",), ("true",), 1, "no such container: no-such-id"),
            ((name, "--env", "NOEQUALS"), ("true",), 2, "--env wants K=V"),
            ((name,), (), 2, "no command"),
            ((name, "--user", "a b"), ("true",), 2, "invalid user")):
        result = corral.run("exec", *options, *(("--", *command) if command else ()))
        assert result.returncode == code, result
        assert words in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr
    corral.run("kill", "-s", "KILL", name, check=True)
    corral.run("wait", name, check=True)
    ended = _exec(corral, name, "true")
    assert ended.returncode == 1 and ended.stderr == f"corral: container {name} has ended: nothing runs in it to exec into\n"


# The command on the far side of -t: its terminal's size, what it reads, Ctrl-C, each reported.
FAR = textwrap.dedent("""
    import os, signal, sys, fcntl, struct, termios
    def size():
        return struct.unpack("HH", fcntl.ioctl(0, termios.TIOCGWINSZ, bytes(4)))
    # Handlers write with os.write: a print() they interrupted would raise on a reentrant one.
    signal.signal(signal.SIGWINCH, lambda *_: os.write(1, b"size %d %d\\n" % size()))
    signal.signal(signal.SIGINT, lambda *_: (os.write(1, b"interrupted\\n"), os._exit(130)))
    print("tty", os.isatty(0), os.getsid(0) == os.getpid(), os.tcgetpgrp(0) == os.getpgrp(), flush=True)
    print("size %d %d" % size(), flush=True)
    for line in sys.stdin:
        print("got", line.strip(), flush=True)
""")


def test_a_terminal_with_its_size_keys_and_ctrl_c(corral, detached):
    name = detached()
    session = PtySession([corral.executable, "exec", "-it", name, "--", sys.executable, "-c", FAR],
                         env=corral.env, rows=30, cols=90)
    try:
        session.expect(b"tty True True True")        # its own session, the terminal its controlling one
        session.expect(b"size 30 90")
        assert is_raw(session.settings())             # ours is raw: keys go through as bytes
        session.write(b"hello\r")
        session.expect(b"got hello")
        session.resize(40, 100)
        session.expect(b"size 40 100")
        session.write(b"\x03")
        session.expect(b"interrupted")
        assert session.wait() == 130
        assert session.settings() == session.before   # and ours is as it was
    finally:
        session.close()


def test_a_terminal_without_interactive_leaves_ours_alone(corral, detached):
    name = detached()
    session = PtySession([corral.executable, "exec", "-t", name, "--", "sh", "-c", "tty; stty size"],
                         env=corral.env, rows=33, cols=77)
    try:
        assert session.wait() == 0
        session.expect(b"33 77")
        assert b"/dev/pts/" in session.output
        assert session.settings() == session.before
    finally:
        session.close()


def test_the_external_containerizer_says_it_cannot_exec(tmp_path):
    from corral.containerizers.external import SyncExternalContainerizer
    from corral.types import ExecConfig, InvalidInput
    external = SyncExternalContainerizer(str(tmp_path / "work"), str(tmp_path / "run"), "/bin/false")
    with pytest.raises(InvalidInput, match="the external containerizer cannot run a command in a running container"):
        external.exec("any", ExecConfig(argv=["true"]))


def _runtime_file(corral, name: str, file: str) -> str:
    return os.path.join(corral.runtime_dir, "containers", name, file)


def _ppid(status_text: str) -> int:
    return int(_status_fields(status_text)["PPid"])


def test_init_serves_execs_unless_its_filter_forbids_it_then_exec_joins_from_outside(corral, detached, tmp_path):
    served = detached()
    assert os.path.exists(_runtime_file(corral, served, "exec.sock"))
    assert not os.path.exists(_runtime_file(corral, served, "exec.json"))
    result = _exec(corral, served, "cat", "/proc/self/status")
    assert result.returncode == 0 and _ppid(result.stdout) == 1         # init's child
    # A filter that denies one call init serves with (an errno, as a profile may): init does
    # not serve, and exec joins the container from outside, as confined as the task.
    profile = tmp_path / "no-accept4.json"
    profile.write_text('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["accept4"], '
                       '"action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}')
    joined = detached("--seccomp-profile", str(profile), "--mem", "64")
    assert not os.path.exists(_runtime_file(corral, joined, "exec.sock"))
    assert os.path.exists(_runtime_file(corral, joined, "exec.json"))
    with open(f"/proc/{_init_pid(corral, joined)}/cgroup") as f:
        expected = sorted(f.read().splitlines())
    result = _exec(corral, joined, "sh", "-c", "cat /proc/$$/status; cat /proc/self/cgroup")
    assert result.returncode == 0, result.stderr
    assert _ppid(result.stdout) == 0                                     # the caller's child, outside
    assert _status_fields(result.stdout)["Seccomp"] == "2"
    assert sorted(line for line in result.stdout.splitlines() if line[:1].isdigit()) == expected
    assert _exec(corral, joined, "id", "-u", options=("--user", "nobody")).stdout == "65534\n"


def test_execs_get_the_tasks_user(corral, detached):
    name = detached("--user", "nobody")
    assert _exec(corral, name, "id", "-u").stdout == "65534\n"
    assert _exec(corral, name, "id", "-u", options=("--user", "0")).stdout == "0\n"


def _send(corral, name: str, payload: bytes, fds=()) -> bytes:
    """One raw request to a container's exec socket: init's first reply ('' when it closed)."""
    import socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
        sock.connect(_runtime_file(corral, name, "exec.sock"))
        if payload:
            socket.send_fds(sock, [payload], list(fds))
        else:
            sock.shutdown(socket.SHUT_WR)
        sock.settimeout(20)
        return sock.recv(4096)


def test_bad_requests_and_silent_clients_never_stop_init_serving(corral, detached):
    name = detached()
    task = _task_pid(corral, name)
    good = json.dumps({"argv": ["true"], "env": {}, "user": None, "workdir": None, "tty": False}).encode()
    with open(os.devnull, "rb") as null:
        three = [null.fileno()] * 3
        assert _send(corral, name, b"") == b""                                   # connects, says nothing, goes
        for payload, fds in ((b"not json", three), (good, ()), (good, three[:2]),
                             (json.dumps({"argv": [1], "env": {}, "user": None, "workdir": None,
                                          "tty": False}).encode(), three),
                             (json.dumps({"argv": ["true"]}).encode(), three)):
            assert _send(corral, name, payload, fds) == b"error 126 a request that is not corral's", payload
        assert _send(corral, name, good, three) == b"started"
    assert os.path.exists(f"/proc/{task}") and _exec(corral, name, "echo", "still").stdout == "still\n"


def test_execs_at_once_end_with_the_task(corral, detached):
    name = detached()
    execs = [corral.popen("exec", name, "--", "sleep", "1000") for _ in range(3)]
    deadline = time.monotonic() + 20
    while len(corral.sync().launcher.pids(name)) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(corral.sync().launcher.pids(name)) == 5            # init, the task, three execs
    os.kill(_task_pid(corral, name), signal.SIGKILL)              # the task ends: init, and its execs, with it
    assert [e.wait(timeout=20) for e in execs] == [128 + signal.SIGKILL] * 3


# A command that says it is alive when asked (SIGUSR1: a file in the sandbox, its working
# directory) and reports what it reads.
ALIVE = textwrap.dedent("""
    import os, signal, sys
    signal.signal(signal.SIGUSR1, lambda *_: open("alive", "w").write("yes"))
    print("pid", os.getpid(), flush=True)
    for line in sys.stdin:
        print("got", repr(line), flush=True)
""")


def test_detach_keys_leave_the_exec_running(corral, detached):
    name = detached()
    session = PtySession([corral.executable, "exec", "-it", name, "--", sys.executable, "-c", ALIVE], env=corral.env)
    try:
        pid = int(session.expect(b"\r\n").split(b"pid ")[1].split(b"\r\n")[0])
        session.write(b"\x10")
        session.write(b"x\r")                    # not the keys: both go on
        session.expect(b"got '\\x10x\\n'")
        session.write(b"\x10\x11")
        assert session.wait() == 1               # as docker exec -it
        session.expect(b"corral: read escape sequence\r\n")   # written before it exited
        assert session.settings() == session.before
    finally:
        session.close()
    # The command runs on, its terminal open (it would have had SIGHUP at its last close).
    assert _exec(corral, name, "kill", "-USR1", str(pid)).returncode == 0
    alive = os.path.join(corral.work_dir, "containers", name, "alive")
    deadline = time.monotonic() + 20
    while not os.path.exists(alive):
        assert time.monotonic() < deadline, "the detached command never answered"
        time.sleep(0.05)
