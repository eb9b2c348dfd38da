"""`corral run -i/-t` and `corral attach` with docker containers: dockerd's attach endpoint over
the CLI's own HTTP client, driven as a user would (pipes, and a real pseudo-terminal)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.ptykit import PtySession, attach_on_a_terminal, detach, is_raw

CORRAL = os.path.join(os.path.dirname(sys.executable), "corral")


@pytest.fixture
def cli(docker_env):
    env = dict(os.environ, CORRAL_WORK_DIR=docker_env.work_dir, CORRAL_RUNTIME_DIR=docker_env.runtime_dir,
               DOCKER_HOST=docker_env.dockerd.url)
    image = docker_env.image["name"]

    def run(*args, **kwargs):
        kwargs.setdefault("timeout", 60)
        kwargs.setdefault("text", True)
        return subprocess.run([CORRAL, *args], env=env, capture_output=True, **kwargs)

    def docker_run(*args, **kwargs):
        return run("run", "--containerizer", "docker", "--image", image, *args, **kwargs)

    def popen(*args, **kwargs):
        return subprocess.Popen([CORRAL, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, **kwargs)
    run.docker_run, run.popen, run.env, run.image = docker_run, popen, env, image
    yield run
    for cid in _ids(run):       # what a failed test left: the leak check still sees it failed
        run("destroy", cid)


def _ids(run) -> list[str]:
    import json
    return [row["container_id"] for row in json.loads(run("ps", "--json").stdout)]


def test_stdin_reaches_the_task_with_i(cli, docker_env):
    result = cli.docker_run("-i", "--", "cat", input="hi\n")
    assert (result.returncode, result.stdout, result.stderr) == (0, "hi\n", "")
    split = cli.docker_run("-i", "--", "sh", "-c", "read a; echo out $a; echo err $a >&2; exit 5", input="x\n")
    assert (split.returncode, split.stdout, split.stderr) == (5, "out x\n", "err x\n")
    # Without -i, the task reads nothing of ours, as before.
    assert cli.docker_run("--", "cat", input="hi\n").stdout == ""


def test_i_with_much_input_and_output_at_once(cli):
    # The task writes while we write: neither side may wait on the other for ever.
    data = os.urandom(4 << 20)
    result = subprocess.run([CORRAL, "run", "--containerizer", "docker", "--image", cli.image, "-i", "--", "cat"],
                            input=data, env=cli.env, capture_output=True, timeout=120)
    assert result.returncode == 0 and result.stdout == data


def test_no_output_is_missed_from_the_start(cli):
    # Attached before the start: a task that writes at once and ends is read whole.
    result = cli.docker_run("-i", "--", "seq", "1", "50000", input="")
    assert result.returncode == 0 and result.stdout == "".join(f"{n}\n" for n in range(1, 50001))


def test_i_into_a_closed_pipe_removes_the_container(cli, docker_env):
    script = f"seq 1 1000000 | {CORRAL} run --containerizer docker --image {cli.image} -i -- cat | head -1"
    result = subprocess.run(["/bin/sh", "-c", script], env=cli.env, capture_output=True, text=True, timeout=60)
    assert result.stdout == "1\n"
    assert _ids(cli) == []


def test_it_through_a_terminal(cli):
    # dockerd 20.10 (API 1.41) sizes the tty once the container has started: the size is read after a line.
    script = ('trap "echo interrupted; exit 130" INT; [ -t 0 ] && [ -t 1 ] && echo tty yes; echo ready; '
              'read line; echo "got $line"; stty size; while read line; do stty size; done')
    session = PtySession([CORRAL, "run", "--containerizer", "docker", "--image", cli.image, "-it", "--",
                          "sh", "-c", script], env=cli.env, rows=33, cols=111)
    try:
        session.expect(b"tty yes")
        session.expect(b"ready")
        assert is_raw(session.settings())           # our keys go to the task's terminal
        session.write(b"hello\r")
        session.expect(b"got hello")                # echoed and line-edited by the task's terminal
        session.expect(b"33 111")
        session.resize(40, 132)
        for _ in range(50):         # the resize call to dockerd and our next key race: ask again
            session.write(b"\r")
            try:
                session.expect(b"40 132", timeout=0.2)
                break
            except AssertionError:
                pass
        session.expect(b"40 132")
        session.write(b"\x03")                      # Ctrl-C: the task's terminal sends it SIGINT
        session.expect(b"interrupted")
        assert session.wait() == 128 + signal.SIGINT
        assert session.settings() == session.before  # our terminal as it was
    finally:
        session.close()
    assert _ids(cli) == []


def test_ctrl_c_ends_a_task_without_a_handler(cli):
    session = PtySession([CORRAL, "run", "--containerizer", "docker", "--image", cli.image, "-it", "--",
                          "sh", "-c", "echo ready; exec sleep 60"], env=cli.env)
    try:
        session.expect(b"ready")
        time.sleep(0.3)             # sleep has replaced the shell
        session.write(b"\x03")
        assert session.wait() == 128 + signal.SIGINT
        assert session.settings() == session.before
    finally:
        session.close()


def test_t_alone_gives_a_terminal_without_our_stdin_and_logs_keep_its_one_stream(cli):
    result = subprocess.run([CORRAL, "run", "--containerizer", "docker", "--image", cli.image, "-t", "-d",
                             "--name", "tty", "--", "sh", "-c", "test -t 0 && test -t 1 && echo tty; echo err >&2"],
                            env=cli.env, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert cli("wait", "tty").stdout == "0\n"
    # A terminal has one stream, a terminal's line ends: dockerd sends it raw, all of it stdout.
    assert cli("logs", "tty", text=False).stdout == b"tty\r\nerr\r\n"
    assert cli("logs", "--stderr", "tty").stdout == ""
    assert cli("destroy", "tty").returncode == 0
    foreground = subprocess.run([CORRAL, "run", "--containerizer", "docker", "--image", cli.image, "-t", "--",
                                 "sh", "-c", 'test -t 0 && echo tty; read -t 1 line; echo "end $line."'],
                                input=b"hi\n", env=cli.env, capture_output=True, timeout=60)
    assert (foreground.returncode, foreground.stdout) == (0, b"tty\r\nend .\r\n")  # our stdin never reached it


def _readline(process: subprocess.Popen, timeout: float = 30.0) -> str:
    timer = threading.Timer(timeout, process.kill)      # a hang fails the test rather than the run
    timer.start()
    try:
        return process.stdout.readline()
    finally:
        timer.cancel()


def _wait_for_log(cli, container_id: str, text: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in cli("logs", container_id).stdout:
        assert time.monotonic() < deadline, f"{text!r} never logged"
        time.sleep(0.05)


def test_attach_to_a_detached_i_container(cli):
    started = cli.docker_run("-d", "-i", "--name", "chat", "--", "sh", "-c",
                             "echo early; read a; echo got $a; read b; echo got $b >&2; exit 4")
    assert (started.returncode, started.stdout) == (0, "chat\n"), started.stderr
    _wait_for_log(cli, "chat", "early")
    first = cli.popen("attach", "chat", stdin=subprocess.PIPE)
    try:
        first.stdin.write("one\n")
        first.stdin.flush()
        assert _readline(first) == "got one\n"        # from now on: "early" came before we attached
    finally:
        first.kill()            # a client that goes away leaves the container running, its stdin open
        first.wait()
    assert cli("ps", "--json").stdout.count('"RUNNING"') == 1
    second = cli("attach", "chat", input="two\n", timeout=30)
    assert (second.returncode, second.stdout, second.stderr) == (4, "", "got two\n")
    assert cli("logs", "chat").stdout == "early\ngot one\n"
    assert cli("logs", "--stderr", "chat").stdout == "got two\n"
    ended = cli("attach", "chat")
    assert (ended.returncode, ended.stderr) == (1, "corral: container chat has ended: nothing to attach to\n")
    assert cli("destroy", "chat").returncode == 0


def test_attach_follows_a_plain_container_from_now_without_our_stdin(cli):
    started = cli.docker_run("-d", "--name", "plain", "--", "sh", "-c",
                             "echo before; sleep 2; echo after; exit 3")
    assert started.returncode == 0, started.stderr
    _wait_for_log(cli, "plain", "before")
    attach = cli("attach", "plain", input="ignored\n")
    assert (attach.returncode, attach.stdout, attach.stderr) == (3, "after\n", "")
    assert cli("destroy", "plain").returncode == 0


def test_attach_to_a_detached_it_container_through_a_terminal(cli):
    script = 'trap "echo interrupted; exit 130" INT; while read line; do echo "got $line"; stty size; done'
    started = cli.docker_run("-d", "-i", "-t", "--name", "term", "--", "sh", "-c", script)
    assert started.returncode == 0, started.stderr
    session = PtySession([CORRAL, "attach", "term"], env=cli.env, rows=25, cols=70)
    try:
        deadline = time.monotonic() + 20
        while not is_raw(session.settings()):
            assert time.monotonic() < deadline, "the terminal never turned raw"
            time.sleep(0.05)
        session.write(b"hi\r")
        session.expect(b"got hi")
        session.expect(b"25 70")                    # attach sized the container's tty as ours
        session.write(b"\x03")
        session.expect(b"interrupted")
        assert session.wait() == 130
        assert session.settings() == session.before
    finally:
        session.close()
    assert cli("destroy", "term").returncode == 0


def test_bad_input_is_one_line(cli):
    it = cli.docker_run("-it", "--", "true", input="")
    assert it.returncode == 1
    assert it.stderr == "corral: the input device is not a TTY: -it needs a terminal on stdin (leave out -t)\n"
    unknown = cli("attach", "no-such-id")
    assert (unknown.returncode, unknown.stderr) == (1, "corral: no such container: no-such-id\n")
    started = cli.docker_run("-d", "-i", "-t", "--name", "needs-tty", "--", "cat")
    assert started.returncode == 0, started.stderr
    piped = cli("attach", "needs-tty", input="x\n")
    assert (piped.returncode, piped.stderr) == (
        1, "corral: the input device is not a TTY: the container has a tty (give --no-stdin)\n")
    assert cli("destroy", "needs-tty").returncode == 0
    assert _ids(cli) == []


def _running(cli, name: str) -> bool:
    import json
    return [row["state"] for row in json.loads(cli("ps", "--json").stdout) if row["container_id"] == name] == ["RUNNING"]


def test_detach_keys_leave_an_attached_container_running(cli):
    started = cli.docker_run("-d", "-i", "-t", "--name", "held", "--", "sh", "-c", 'while read l; do echo "got [$l]"; done')
    assert started.returncode == 0, started.stderr
    session = attach_on_a_terminal(CORRAL, cli.env, "held")
    try:
        session.write(b"one\r")
        session.expect(b"got [one]")
        detach(session)                            # ctrl-p ctrl-q: we leave, as docker attach
    finally:
        session.close()
    assert _running(cli, "held")
    # Keys of our own: dockerd is told them too, so ctrl-p ctrl-q are the task's, not dockerd's detach.
    session = attach_on_a_terminal(CORRAL, cli.env, "held", "--detach-keys", "ctrl-a,x")
    try:
        session.write(b"\x10\x11two\r")
        session.expect(b"two]")
        detach(session, b"\x01x")
    finally:
        session.close()
    assert _running(cli, "held")
    assert cli("destroy", "held").returncode == 0
