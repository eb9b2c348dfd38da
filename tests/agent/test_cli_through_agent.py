"""`corral --agent HOST:PORT`: the container commands through a real agent's API, not the
host's files (the CLI runs with a work dir of its own, where nothing is)."""

from __future__ import annotations

import json
import signal

from tests.agent.test_api import by_id, launch, scalar


def test_ps_logs_usage_kill_wait_destroy_through_the_agent(agent_process, corral, tmp_path):
    agent = agent_process()
    address = f"127.0.0.1:{agent.port}"
    elsewhere = ("--work-dir", str(tmp_path / "nothing"), "--runtime-dir", str(tmp_path / "nothing-run"))

    def cli(*args):
        return corral.run(*elsewhere, "--agent", address, *args)
    resources = [scalar("cpus", 0.1), scalar("mem", 32)]
    assert agent.call(launch("talker", "echo out; echo err >&2; exec sleep 600", resources))[0] == 200
    assert agent.call(launch("short", "for i in 1 2 3; do echo $i; sleep 0.1; done; exit 3", resources))[0] == 200

    followed = cli("logs", "--follow", "short")
    assert (followed.returncode, followed.stdout) == (0, "1\n2\n3\n")   # all of it, and it returned at the end
    assert cli("wait", "short").stdout == "3\n"
    assert json.loads(cli("wait", "--json", "short").stdout)["state"] == "TASK_FAILED"
    listed = cli("ps")
    assert listed.returncode == 0 and listed.stdout.split("\n")[0].split()[:3] == ["CONTAINER", "ID", "STATE"]
    rows = {line.split()[0]: line.split()[1] for line in listed.stdout.splitlines()[1:]}
    assert rows == {"short": "TASK_FAILED", "talker": "TASK_RUNNING"}
    assert cli("logs", "--stderr", "talker").stdout == "err\n"
    assert "mem_limit_bytes" in json.loads(cli("usage", "--json", "talker").stdout)
    assert cli("kill", "--signal", "TERM", "talker").returncode == 0
    assert cli("wait", "talker").stdout == f"{128 + signal.SIGTERM}\n"
    for container_id in ("talker", "short"):
        destroyed = cli("destroy", container_id)
        assert (destroyed.returncode, destroyed.stdout) == (0, f"{container_id}\n")
    assert agent.state()["containers"] == []
    assert agent.call(by_id("WAIT_CONTAINER", "talker"))[0] == 404


def test_errors_through_the_agent_are_one_line(agent_process, corral):
    agent = agent_process()
    unknown = corral.run("--agent", f"127.0.0.1:{agent.port}", "wait", "nobody")
    assert unknown.returncode == 1 and unknown.stderr.count("\n") == 1 and "nobody" in unknown.stderr
    refused = corral.run("--agent", f"127.0.0.1:{agent.port}", "pull", "busybox")
    assert refused.returncode == 2 and "does not go through --agent" in refused.stderr
    bad = corral.run("--agent", "ftp://x", "ps")
    assert bad.returncode == 2 and "--agent wants HOST:PORT" in bad.stderr
    agent.stop()
    gone = corral.run("--agent", f"127.0.0.1:{agent.port}", "ps")
    assert gone.returncode == 1 and gone.stderr.startswith(f"corral: the agent at 127.0.0.1:{agent.port}: ")


def test_attach_through_the_agent_with_a_pipe_and_with_a_terminal(agent_process, corral):
    """`corral --agent X attach ID` to containers launched with a tty: our stdin reaches the task,
    its output ours, the exit code is the task's; from a real terminal, raw mode meanwhile, our
    window size and its change reach the task's terminal, and the terminal is restored."""
    import sys

    from tests.agent.test_attach_api import TASK
    from tests.agent.test_attach_api import launch as launch_tty
    from tests.conftest import CORRAL
    from tests.ptykit import PtySession, is_raw
    agent = agent_process()
    address = f"127.0.0.1:{agent.port}"
    assert agent.call(launch_tty("piped", ["/bin/sh", "-c", "read x; echo got $x; exit 5"]))[0] == 200
    attached = corral.run("--agent", address, "attach", "piped", input="hello\n")
    assert attached.returncode == 5, attached.stderr
    assert "got hello" in attached.stdout            # after the tty's echo of what we typed
    assert agent.call(launch_tty("shown", [sys.executable, "-c", TASK]))[0] == 200
    session = PtySession([CORRAL, "--agent", address, "attach", "shown"], env=corral.env, rows=30, cols=100)
    try:
        session.write(b"line\r")
        session.expect(b"tty True size 30x100 read line")
        assert is_raw(session.settings())
        session.resize(40, 120)
        session.expect(b"resized 40x120")
        session.write(b"\x03")                      # ^C: SIGINT from the task's terminal
        assert session.wait() == 128 + 2
        assert not is_raw(session.settings())
    finally:
        session.close()
    for container_id in ("piped", "shown"):
        agent.call(by_id("WAIT_CONTAINER", container_id))
        assert agent.call(by_id("REMOVE_CONTAINER", container_id))[0] == 200


def test_exec_through_the_agent(agent_process, corral):
    """`corral --agent X exec`: a nested session of the agent's (LAUNCH_NESTED_CONTAINER_SESSION),
    with the command's output, its exit code, --env, our stdin with -i, and -it from a real
    terminal with its size and our keys."""
    from tests.conftest import CORRAL
    from tests.ptykit import PtySession, is_raw
    agent = agent_process()
    address = f"127.0.0.1:{agent.port}"
    assert agent.call(launch("box", "echo $$ > pid; exec sleep 600", [scalar("cpus", 0.1), scalar("mem", 64)]))[0] == 200

    def cli(*args, **kwargs):
        return corral.run("--agent", address, *args, **kwargs)
    # The task's pid, as the task saw it, is a sleep in the exec's pid namespace too.
    ran = cli("exec", "--env", "GREETING=hello", "box", "--", "sh", "-c", "echo $GREETING from $(cat /proc/$(cat pid)/comm); "
              "echo err >&2; exit 4")
    assert (ran.returncode, ran.stdout, ran.stderr) == (4, "hello from sleep\n", "err\n")
    assert cli("exec", "-i", "box", "--", "tr", "a-z", "A-Z", input="quiet\n").stdout == "QUIET\n"
    session = PtySession([CORRAL, "--agent", address, "exec", "-it", "box", "--", "sh", "-c",
                          "stty size; read x; echo got $x"], env=corral.env, rows=33, cols=101)
    try:
        session.expect(b"33 101")
        assert is_raw(session.settings())
        session.write(b"typed\r")
        session.expect(b"got typed")
        assert session.wait() == 0 and not is_raw(session.settings())
    finally:
        session.close()
    unknown = cli("exec", "nobody", "--", "true")
    assert unknown.returncode == 1 and unknown.stderr.count("\n") == 1
    assert cli("destroy", "box").returncode == 0


def test_detach_keys_through_the_agent(agent_process, corral):
    """`corral --agent X attach` from a terminal: the detach keys leave the container running
    (a partial sequence reaching the task as typed); a later attach gets its output."""
    import sys
    import textwrap

    from tests.agent.test_attach_api import launch as launch_tty
    from tests.conftest import CORRAL
    from tests.ptykit import PtySession
    agent = agent_process()
    address = f"127.0.0.1:{agent.port}"
    task = textwrap.dedent("""
        import sys
        for line in sys.stdin:
            print("got", repr(line), flush=True)
    """)
    assert agent.call(launch_tty("held", [sys.executable, "-c", task]))[0] == 200
    session = PtySession([CORRAL, "--agent", address, "attach", "held"], env=corral.env)
    try:
        session.write(b"\x10")
        session.write(b"a\r")
        session.expect(b"got '\\x10a\\n'")
        session.write(b"\x10\x11")
        assert session.wait() == 1
        session.expect(b"corral: read escape sequence\r\n")   # written before it exited
        assert session.settings() == session.before
    finally:
        session.close()
    session = PtySession([CORRAL, "--agent", address, "attach", "held"],
                         env={**corral.env, "CORRAL_DETACH_KEYS": "ctrl-a,x"})
    try:
        session.write(b"again\r")
        session.expect(b"got 'again\\n'")          # it ran on, its output flows to the next attach
        session.write(b"\x01x")
        assert session.wait() == 1
    finally:
        session.close()
    assert agent.call(by_id("KILL_CONTAINER", "held"))[0] == 200
    agent.call(by_id("WAIT_CONTAINER", "held"))
    assert agent.call(by_id("REMOVE_CONTAINER", "held"))[0] == 200
