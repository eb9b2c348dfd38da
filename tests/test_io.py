"""A task's interactive I/O, as a user drives it: `corral run -i`, `-t` through a real
pseudo-terminal, `corral attach`, and capped, rotated logs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from tests.ptykit import PtySession, attach_on_a_terminal, detach, is_raw

# The task of the terminal tests: what a program on a terminal sees, printed as it changes.
TTY_TASK = textwrap.dedent("""
    import fcntl, os, signal, struct, sys, termios
    def size():
        rows, cols = struct.unpack("HHHH", fcntl.ioctl(0, termios.TIOCGWINSZ, bytes(8)))[:2]
        return f"{rows}x{cols}"
    say = lambda text: os.write(1, text.encode() + b"\\n")      # safe in a handler, unlike print
    signal.signal(signal.SIGWINCH, lambda *_: say("resized " + size()))
    signal.signal(signal.SIGTSTP, lambda *_: say("got SIGTSTP"))
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    say(f"tty {os.isatty(0)} {os.isatty(1)} size {size()} session leader {os.getsid(0) == os.getpid()} "
        f"foreground {os.tcgetpgrp(0) == os.getpgrp()}")
    for line in sys.stdin:
        say("read " + line.strip())
""")


def test_stdin_reaches_the_task_with_i(corral):
    result = corral.run("run", "-i", "--", "cat", input="hi\n")
    assert (result.returncode, result.stdout, result.stderr) == (0, "hi\n", "")
    # Without -i, the task's stdin is /dev/null, as before.
    assert corral.run("run", "--", "cat", input="hi\n", check=True).stdout == ""


def test_i_keeps_stdout_stderr_and_the_exit_code_apart(corral):
    result = corral.run("run", "-i", "--", "/bin/sh", "-c", "read a; echo out $a; echo err $a >&2; exit 5",
                        input="x\n")
    assert (result.returncode, result.stdout, result.stderr) == (5, "out x\n", "err x\n")


def test_i_with_much_input_and_output_at_once(corral):
    # The task writes while we write: neither side may wait on the other for ever.
    data = os.urandom(8 << 20)
    result = subprocess.run([corral.executable, "run", "-i", "--", "cat"], input=data, env=corral.env,
                            capture_output=True, timeout=120)
    assert result.returncode == 0 and result.stdout == data


def test_i_into_a_closed_pipe_removes_the_container(corral):
    script = f"seq 1 1000000 | {corral.executable} run -i -- cat | head -1"
    result = subprocess.run(["/bin/sh", "-c", script], env=corral.env, capture_output=True, text=True, timeout=60)
    assert result.stdout == "1\n"
    assert corral.sync().containers() == []


def test_it_through_a_terminal(corral):
    session = PtySession([corral.executable, "run", "-it", "--", sys.executable, "-c", TTY_TASK],
                         env=corral.env, rows=33, cols=111)
    try:
        session.expect(b"tty True True size 33x111 session leader True foreground True")
        assert is_raw(session.settings())           # our keys go to the task's terminal
        session.resize(40, 132)
        session.expect(b"resized 40x132")
        session.write(b"hello\r")
        session.expect(b"read hello")               # echoed and line-edited by the task's terminal
        session.write(b"\x1a")                      # Ctrl-Z
        session.expect(b"got SIGTSTP")
        session.write(b"\x03")                      # Ctrl-C: the task's terminal sends it SIGINT
        assert session.wait() == 128 + signal.SIGINT
        assert session.settings() == session.before  # our terminal as it was
    finally:
        session.close()


def test_it_restores_the_terminal_when_corral_is_killed(corral):
    session = PtySession([corral.executable, "run", "-it", "--name", "term", "--", "sleep", "60"], env=corral.env)
    try:
        deadline = time.monotonic() + 20
        while not is_raw(session.settings()):
            assert time.monotonic() < deadline, "the terminal never turned raw"
            time.sleep(0.05)
        session.process.send_signal(signal.SIGTERM)   # passed on to the task, which ends; then ours
        assert session.wait() == 128 + signal.SIGTERM
        assert session.settings() == session.before
    finally:
        session.close()


def test_it_needs_a_terminal(corral):
    result = corral.run("run", "-it", "--", "true", input="")
    assert result.returncode == 1
    assert result.stderr == "corral: the input device is not a TTY: -it needs a terminal on stdin (leave out -t)\n"


def test_t_alone_gives_a_terminal_without_our_stdin(corral):
    result = subprocess.run([corral.executable, "run", "-t", "--", "/bin/sh", "-c",
                             "test -t 0 && test -t 1 && echo tty; timeout 1 cat; echo end"],
                            input=b"hi\n", env=corral.env, capture_output=True, timeout=60)
    assert result.returncode == 0
    assert result.stdout == b"tty\r\nend\r\n"      # a terminal's line ends; our stdin never reached it


def _wait_for_log(corral, container_id: str, text: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in corral.run("logs", container_id, check=True).stdout:
        assert time.monotonic() < deadline, f"{text!r} never logged"
        time.sleep(0.05)


def _readline(process: subprocess.Popen, timeout: float = 30.0) -> str:
    timer = threading.Timer(timeout, process.kill)      # a hang fails the test rather than the run
    timer.start()
    try:
        return process.stdout.readline()
    finally:
        timer.cancel()


def test_attach_to_a_detached_i_container(corral):
    assert corral.run("run", "-d", "-i", "--name", "chat", "--", "/bin/sh", "-c",
                      "echo early; read a; echo got $a; read b; echo got $b >&2; exit 4", check=True).stdout == "chat\n"
    _wait_for_log(corral, "chat", "early")
    first = corral.popen("attach", "chat", stdin=subprocess.PIPE)
    try:
        first.stdin.write("one\n")
        first.stdin.flush()
        assert _readline(first) == "got one\n"        # from now on: "early" came before we attached
    finally:
        first.kill()            # a client that goes away leaves the container running
        first.wait()
    assert corral.run("ps", "--json", check=True).stdout.count('"RUNNING"') == 1
    second = corral.run("attach", "chat", input="two\n", timeout=30)
    assert (second.returncode, second.stdout, second.stderr) == (4, "", "got two\n")
    assert corral.run("logs", "chat", check=True).stdout == "early\ngot one\n"
    assert corral.run("logs", "--stderr", "chat", check=True).stdout == "got two\n"
    ended = corral.run("attach", "chat")
    assert (ended.returncode, ended.stderr) == (1, "corral: container chat has ended: nothing to attach to\n")
    corral.run("destroy", "chat", check=True)


def test_attach_follows_a_plain_container_from_now(corral):
    corral.run("run", "-d", "--name", "plain", "--", "/bin/sh", "-c",
               "echo before; while [ ! -e go ]; do sleep 0.05; done; echo after; exit 3", check=True)
    _wait_for_log(corral, "plain", "before")
    attach = corral.popen("attach", "plain")
    time.sleep(1)               # its files opened
    open(os.path.join(corral.work_dir, "containers", "plain", "go"), "w").close()
    out, _ = attach.communicate(timeout=30)
    assert (attach.returncode, out) == (3, "after\n")
    corral.run("destroy", "plain", check=True)


def _lines(text: str) -> list[int]:
    return [int(line) for line in text.splitlines()]


def test_log_cap_bounds_the_disk_and_logs_reads_the_rotated_files_in_order(corral):
    cap, files = 64 * 1024, 3
    corral.run("run", "-d", "--name", "chatty", "--log-max-size", "64k", "--log-max-files", str(files), "--",
               "/bin/sh", "-c", "seq 1 400000; seq 1 1000 >&2", check=True)
    follower = corral.popen("logs", "-f", "chatty")
    assert corral.run("wait", "chatty", check=True).stdout == "0\n"
    followed, _ = follower.communicate(timeout=60)
    sandbox = os.path.join(corral.work_dir, "containers", "chatty")
    names = sorted(os.listdir(sandbox))
    assert names == ["stderr", "stdout", "stdout.1", "stdout.2"]
    contents = {name: open(os.path.join(sandbox, name)).read() for name in names}
    assert all(len(text) <= cap for text in contents.values())
    assert len(contents["stdout.1"]) == len(contents["stdout.2"]) == cap
    logged = corral.run("logs", "chatty", check=True).stdout
    # The last 3 x 64 KiB of the output, oldest file first: whole lines but perhaps the first.
    assert logged == contents["stdout.2"] + contents["stdout.1"] + contents["stdout"]
    numbers = _lines(logged)
    assert numbers[1:] == list(range(numbers[1], 400001))
    # A follower across rotations sees the output in order, never twice, to the end. It may miss
    # what was rotated away before it read it (a line cut there joins the next one it sees), so
    # order is checked on the lines that follow their predecessor.
    seen = [int(line) for line in followed.splitlines() if line]
    continuing = [b for a, b in zip(seen, seen[1:]) if b == a + 1]
    assert seen[-1] == 400000 and followed.endswith(contents["stdout"])
    assert all(a < b for a, b in zip(continuing, continuing[1:]))
    assert _lines(corral.run("logs", "--stderr", "chatty", check=True).stdout) == list(range(1, 1001))
    corral.run("destroy", "chatty", check=True)


def test_log_cap_of_one_file_keeps_no_older_file(corral):
    corral.run("run", "-d", "--name", "one", "--log-max-size", "1000", "--", "seq", "1", "5000", check=True)
    assert corral.run("wait", "one", check=True).stdout == "0\n"
    sandbox = os.path.join(corral.work_dir, "containers", "one")
    assert sorted(os.listdir(sandbox)) == ["stderr", "stdout"]
    logged = corral.run("logs", "one", check=True).stdout
    assert 0 < len(logged) <= 1000 and logged.endswith("4999\n5000\n")
    corral.run("destroy", "one", check=True)


@pytest.mark.parametrize("args, message", [
    (["--log-max-size", "0"], "must be at least 1 byte"),
    (["--log-max-size", "lots"], "not a size: 'lots'"),
    (["--log-max-size", "1k", "--log-max-files", "0"], "must be 1 to 100"),
    (["--log-max-size", "1k", "--log-max-files", "x"], "not a whole number"),
    (["--log-max-files", "3"], "--log-max-files needs --log-max-size"),
])
def test_bad_log_options_are_one_line_and_exit_2(corral, args, message):
    result = corral.run("run", *args, "--", "true")
    assert result.returncode == 2
    assert message in result.stderr and result.stderr.count("\n") == 1


# A task on a terminal that reports each line it reads, as repr: typed control keys show.
ECHO_TASK = textwrap.dedent("""
    import sys
    print("ready", flush=True)
    for line in sys.stdin:
        print("got", repr(line), flush=True)
""")


def test_detach_keys_leave_an_attached_container_running(corral):
    corral.run("run", "-d", "-it", "--name", "held", "--", sys.executable, "-c", ECHO_TASK, check=True)
    _wait_for_log(corral, "held", "ready")
    session = attach_on_a_terminal(corral.executable, corral.env, "held")
    try:
        session.write(b"\x10")
        session.write(b"a\r")                      # ctrl-p, then not ctrl-q: both reach the task
        session.expect(b"got '\\x10a\\n'")
        detach(session)                            # ctrl-p ctrl-q: we leave, as docker attach
    finally:
        session.close()
    assert corral.run("ps", "--json", check=True).stdout.count('"RUNNING"') == 1
    # Another attach, with keys of its own: ctrl-p ctrl-q are now the task's; its output still flows.
    session = attach_on_a_terminal(corral.executable, corral.env, "held", "--detach-keys", "ctrl-a,x")
    try:
        session.write(b"\x10\x11again\r")
        session.expect(b"again\\n'")
        detach(session, b"\x01x")
    finally:
        session.close()
    assert corral.run("ps", "--json", check=True).stdout.count('"RUNNING"') == 1
    corral.run("destroy", "held", check=True)


def test_detach_keys_leave_a_foreground_run_it_running(corral):
    session = PtySession([corral.executable, "run", "-it", "--name", "fg", "--", sys.executable, "-c", ECHO_TASK],
                         env={**corral.env, "CORRAL_DETACH_KEYS": "ctrl-^,q"})
    try:
        session.expect(b"ready")
        session.write(b"\x1eq")
        assert session.wait() == 0                 # as docker run -it: quietly, exit 0
        assert b"corral:" not in session.output
        assert session.settings() == session.before
    finally:
        session.close()
    assert corral.run("ps", "--json", check=True).stdout.count('"RUNNING"') == 1      # not removed
    session = attach_on_a_terminal(corral.executable, corral.env, "fg")
    try:
        session.write(b"back\r")
        session.expect(b"got 'back\\n'")
        session.write(b"\x10\x11")
        assert session.wait() == 1
    finally:
        session.close()
    corral.run("destroy", "fg", check=True)


@pytest.mark.parametrize("args, env", [
    (("run", "-it", "--detach-keys", "ctrl-P", "--", "true"), {}),
    (("attach", "--detach-keys", "a,,b", "some-id"), {}),
    (("exec", "-it", "--detach-keys=ctrl-", "some-id", "--", "true"), {}),
    (("exec", "-it", "some-id", "--", "true"), {"CORRAL_DETACH_KEYS": "ctrl-p,ctrl-Q"})])
def test_bad_detach_keys_are_one_line_and_exit_2(corral, args, env):
    result = subprocess.run([corral.executable, *args], env={**corral.env, **env}, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("corral: argument --detach-keys: no such key '") and result.stderr.count("\n") == 1
