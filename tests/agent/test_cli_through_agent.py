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
