"""`corral exec` into docker containers: dockerd's exec API over the CLI's own HTTP client."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.ptykit import PtySession, is_raw

CORRAL = os.path.join(os.path.dirname(sys.executable), "corral")


@pytest.fixture
def cli(docker_env):
    env = dict(os.environ, CORRAL_WORK_DIR=docker_env.work_dir, CORRAL_RUNTIME_DIR=docker_env.runtime_dir,
               DOCKER_HOST=docker_env.dockerd.url)
    started = []

    def run(*args, **kwargs):
        return subprocess.run([CORRAL, *args], env=env, capture_output=True, text=True, timeout=60, **kwargs)

    def start() -> str:
        result = run("run", "--containerizer", "docker", "--image", docker_env.image["name"], "--detach",
                     "--env", "GREETING=hi", "--", "sleep", "600")
        assert result.returncode == 0, result.stderr
        started.append(result.stdout.strip())
        return started[-1]
    run.start, run.env = start, env
    yield run
    for cid in started:
        run("destroy", cid)


def test_output_streams_exit_code_and_the_containers_environment(cli, docker_env):
    cid = cli.start()
    result = cli("exec", cid, "--env", "EXTRA=more", "--", "sh", "-c",
                 'echo "$GREETING $EXTRA $(pwd)"; echo err >&2; seq 20000; exit 5')
    assert result.returncode == 5
    assert result.stdout == "hi more /mnt/mesos/sandbox\n" + "".join(f"{n}\n" for n in range(1, 20001))
    assert result.stderr == "err\n"
    # The same process namespace as the task's: its sleep is there
    assert "sleep 600" in cli("exec", cid, "--", "ps").stdout
    assert cli("exec", cid, "--user", "nobody", "--workdir", "/tmp", "--", "sh", "-c", "id -u; pwd").stdout == "65534\n/tmp\n"
    assert cli("exec", cid, "--", "sh", "-c", "kill -TERM $$").returncode == 128 + signal.SIGTERM


def test_stdin_with_interactive_until_its_end(cli):
    cid = cli.start()
    assert cli("exec", "-i", cid, "--", "cat", input="one\ntwo\n").stdout == "one\ntwo\n"
    assert cli("exec", cid, "--", "cat", input="ignored\n").stdout == ""


def test_a_terminal_with_its_size_and_ctrl_c(cli):
    cid = cli.start()
    # dockerd sizes the terminal once the exec has started (API 1.41): the size is read after a line.
    script = ('trap "echo interrupted; exit 130" INT; echo ready; read line; echo "got $line"; stty size; '
              'while read line; do stty size; done')
    session = PtySession([CORRAL, "exec", "-it", cid, "--", "sh", "-c", script], env=cli.env, rows=30, cols=90)
    try:
        session.expect(b"ready")
        assert is_raw(session.settings())
        session.write(b"hello\r")
        session.expect(b"got hello")
        session.expect(b"30 90")
        session.resize(40, 100)
        for _ in range(50):         # the resize call to dockerd and our next key race: ask again
            session.write(b"\r")
            try:
                session.expect(b"40 100", timeout=0.2)
                break
            except AssertionError:
                pass
        session.expect(b"40 100")
        session.write(b"\x03")
        session.expect(b"interrupted")      # busybox sh runs the trap once its read returns
        assert session.wait() == 130
        assert session.settings() == session.before
    finally:
        session.close()


def test_an_ended_or_unknown_container_is_one_line(cli):
    cid = cli.start()
    cli("kill", "-s", "KILL", cid)
    cli("wait", cid)
    ended = cli("exec", cid, "--", "true")
    assert ended.returncode == 1 and ended.stderr == f"corral: container {cid} has ended: nothing runs in it to exec into\n"
    unknown = cli("exec", "no-such-id", "--", "true")
    assert unknown.returncode == 1 and unknown.stderr == "corral: no such container: no-such-id\n"
