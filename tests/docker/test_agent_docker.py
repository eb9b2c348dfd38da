"""The agent with the docker containerizer beside the Mesos one (--containerizers), against the
private dockerd: a DOCKER ContainerInfo runs in dockerd with the resources and ports it was
given; kill, wait and remove work as for Mesos containers; and a SIGKILLed agent re-attaches
the docker containers still running, reports the real exit of those that ended meanwhile, and
removes the ones nobody knows."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from corral.containerizers.docker import LABEL_ID
from corral.types import TASK_FAILED, TASK_KILLED, TASK_RUNNING, TASK_STARTING
from tests.agent.agentkit import AgentProcess, InProcessAgent, free_port_block
from tests.private_dockerd import BUSYBOX_IMAGE

DOCKER = {"type": "DOCKER", "docker": {"image": BUSYBOX_IMAGE}}
MiB = 1024 * 1024


def launch(container_id, command, resources=(), container=None):
    call = {"container_id": {"value": container_id}, "command": {"value": command}, "resources": list(resources)}
    if container is not None:
        call["container"] = container
    return {"type": "LAUNCH_CONTAINER", "launch_container": call}


def by_id(call, container_id):
    return {"type": call, call.lower(): {"container_id": {"value": container_id}}}


def scalar(name, value):
    return {"name": name, "type": "SCALAR", "scalar": {"value": value}}


def in_dockerd(dockerd, container_id) -> dict | None:
    """`docker inspect` of the docker container corral made for `container_id`, if any."""
    found = dockerd.docker("ps", "-aq", "--filter", f"label={LABEL_ID}={container_id}").stdout.split()
    return json.loads(dockerd.docker("inspect", *found).stdout)[0] if found else None


@pytest.fixture
def agent_argv(corral, docker_env):
    """The agent's flags on this test's dirs, cgroups root, private dockerd and 10 ports."""
    base = free_port_block(10)

    def make(*extra: str) -> list[str]:
        return [f"--work_dir={corral.work_dir}", f"--runtime_dir={corral.runtime_dir}",
                f"--cgroups_root={corral.cgroups_root}", f"--docker_socket={docker_env.dockerd.url}",
                f"--resources=cpus:2;mem:1024;disk:1024;ports:[{base}-{base + 9}]", *extra]
    make.ports = range(base, base + 10)
    return make


def test_docker_and_mesos_containers_side_by_side(agent_argv, corral, docker_env):
    from corral.agent.flags import parse
    dockerd = docker_env.dockerd

    async def scenario():
        async with InProcessAgent(parse(agent_argv("--containerizers=mesos,docker"), {})) as a:
            given = [scalar("cpus", 0.5), scalar("mem", 64), scalar("ports", 1)]
            command = 'echo "$PORT0 $MESOS_SANDBOX" > $MESOS_SANDBOX/out; echo to-stdout; exit 3'
            assert await a.call(launch("ends", command, given, DOCKER)) == (200, "")
            status, waited = await a.call(by_id("WAIT_CONTAINER", "ends"))
            assert status == 200 and waited["wait_container"]["state"] == TASK_FAILED
            assert os.WEXITSTATUS(waited["wait_container"]["exit_status"]) == 3
            sandbox = Path(corral.work_dir, "containers", "ends")
            port, mounted = (sandbox / "out").read_text().split()
            assert int(port) in agent_argv.ports and mounted == "/mnt/mesos/sandbox"
            assert (sandbox / "stdout").read_text() == "to-stdout\n"

            assert (await a.call(launch("sleeps", "sleep 100", given, DOCKER)))[0] == 200
            host = in_dockerd(dockerd, "sleeps")["HostConfig"]
            assert (host["Memory"], host["CpuShares"], host["NetworkMode"]) == (64 * MiB, 512, "host")
            offline = {"type": "DOCKER", "docker": {"image": BUSYBOX_IMAGE, "network": "NONE"}}
            assert (await a.call(launch("offline", "ls /sys/class/net > $MESOS_SANDBOX/nets", [], offline)))[0] == 200
            assert (await a.call(launch("mesos", "sleep 100")))[0] == 200     # no ContainerInfo: Mesos's
            assert in_dockerd(dockerd, "mesos") is None
            assert os.path.isdir(os.path.join(corral.runtime_dir, "containers", "mesos"))

            for container_id in ("sleeps", "mesos"):
                assert (await a.call(by_id("KILL_CONTAINER", container_id)))[0] == 200
                assert (await a.call(by_id("WAIT_CONTAINER", container_id)))[1]["wait_container"]["state"] == \
                    TASK_KILLED
            await a.call(by_id("WAIT_CONTAINER", "offline"))
            assert Path(corral.work_dir, "containers", "offline", "nets").read_text() == "lo\n"
            for container_id in ("ends", "sleeps", "offline", "mesos"):
                assert (await a.call(by_id("REMOVE_CONTAINER", container_id)))[0] == 200
                assert in_dockerd(dockerd, container_id) is None
                assert not Path(corral.work_dir, "containers", container_id).exists()
            assert a.agent.allocator.held == {}
    asyncio.run(scenario())


def test_a_docker_only_agent_refuses_a_mesos_container_naming_what_is_missing(agent_argv):
    from corral.agent.flags import parse

    async def scenario():
        async with InProcessAgent(parse(agent_argv("--containerizers=docker"), {})) as a:
            status, text = await a.call(launch("plain", "true"))
            assert status == 400 and text.startswith(
                "a MESOS container needs the mesos (or external) containerizer, and this agent has "
                "--containerizers=docker"), text
            assert a.agent.records == {} and a.agent.allocator.held == {}
    asyncio.run(scenario())


def test_dockerd_down_stops_the_start_and_is_503_later(agent_argv, docker_env, tmp_path):
    """As mesos-agent: no dockerd, no start (one line). dockerd gone under a running agent is no
    bad input: a LAUNCH is 503 (try again later) with the reason, and nothing is kept."""
    down = f"unix://{tmp_path}/nobody.sock"
    with pytest.raises(AssertionError, match=rf"the agent did not start: corral agent: dockerd at {down} "
                                             r"is not reachable \(No such file or directory\)\n$"):
        AgentProcess(agent_argv("--containerizers=docker", f"--docker_socket={down}"))
    from corral.agent.flags import parse
    dockerd = docker_env.dockerd

    async def scenario():
        async with InProcessAgent(parse(agent_argv("--containerizers=docker"), {})) as a:
            await asyncio.to_thread(dockerd.stop)
            try:
                status, text = await a.call(launch("later", "true", [scalar("cpus", 0.5)], DOCKER))
                assert status == 503 and text.startswith(f"dockerd at {dockerd.url} is not reachable"), text
                assert a.agent.records == {} and a.agent.allocator.held == {}
            finally:
                await asyncio.to_thread(dockerd.start)
            assert await a.call(launch("later", "true", [scalar("cpus", 0.5)], DOCKER)) == (200, "")
            status, waited = await a.call(by_id("WAIT_CONTAINER", "later"))
            assert status == 200 and waited["wait_container"]["state"] == "TASK_FINISHED"
            assert (await a.call(by_id("REMOVE_CONTAINER", "later")))[0] == 200
    asyncio.run(scenario())


def test_a_sigkilled_agent_reattaches_docker_containers(agent_argv, corral, docker_env):
    dockerd = docker_env.dockerd
    argv = agent_argv("--containerizers=docker,mesos")
    agents = [AgentProcess(argv)]
    try:
        agent = agents[-1]
        assert agent.call(launch("runs", "sleep 100", container=DOCKER))[0] == 200
        assert agent.call(launch("ends", "sleep 1; exit 7", container=DOCKER))[0] == 200
        assert agent.call(launch("stranger", "sleep 100", container=DOCKER))[0] == 200
        assert agent.call(launch("mesos", "sleep 100"))[0] == 200
        before = in_dockerd(dockerd, "runs")
        agent.sigkill()
        # The agent forgets "stranger" (its checkpoint is gone): nobody knows that container now.
        stranger = Path(corral.work_dir, "meta", "containers", "stranger")
        for name in os.listdir(stranger):
            os.unlink(stranger / name)
        stranger.rmdir()
        deadline = time.monotonic() + 10
        while in_dockerd(dockerd, "ends")["State"]["Running"]:       # it ends while no agent watches
            assert time.monotonic() < deadline
            time.sleep(0.1)

        agents.append(AgentProcess(argv))
        agent = agents[-1]
        status, waited = agent.call(by_id("WAIT_CONTAINER", "ends"))
        assert status == 200 and waited["wait_container"]["state"] == TASK_FAILED
        assert os.WEXITSTATUS(waited["wait_container"]["exit_status"]) == 7
        streams = {c["container_id"]["value"]: [s["state"] for s in c["statuses"]]
                   for c in agent.state()["containers"]}
        assert streams == {"ends": [TASK_STARTING, TASK_RUNNING, TASK_FAILED],
                           "runs": [TASK_STARTING, TASK_RUNNING], "mesos": [TASK_STARTING, TASK_RUNNING]}
        after = in_dockerd(dockerd, "runs")         # the same container, never restarted
        assert (after["Id"], after["State"]["StartedAt"], after["State"]["Running"]) == (
            before["Id"], before["State"]["StartedAt"], True)
        assert in_dockerd(dockerd, "stranger") is None
        assert not Path(corral.work_dir, "containers", "stranger").exists()
        # SIGTERM stops the agent at once, with containers running (and its threads waiting on them)
        stopping = time.monotonic()
        assert agent.stop() == 0 and time.monotonic() - stopping < 5
        agents.append(AgentProcess(argv))
        agent = agents[-1]
        assert in_dockerd(dockerd, "runs")["State"]["Running"]

        for container_id in ("runs", "mesos"):
            assert agent.call(by_id("KILL_CONTAINER", container_id))[0] == 200
            assert agent.call(by_id("WAIT_CONTAINER", container_id))[1]["wait_container"]["state"] == TASK_KILLED
        for container_id in ("ends", "runs", "mesos"):
            assert agent.call(by_id("REMOVE_CONTAINER", container_id))[0] == 200
            assert in_dockerd(dockerd, container_id) is None
        assert json.load(open(os.path.join(corral.work_dir, "meta", "allocations.json"))) == {}
    finally:
        for agent in agents:
            if agent.proc.poll() is None:
                agent.stop()


def test_an_image_no_registry_has_is_a_404_and_a_registry_down_a_503(agent_argv, tmp_path):
    """Issue 9: both were 500s, as was a reference dockerd refuses (400). dockerd pulls from registries on loopback only: an empty
    docker-registry of the test's own, and a port nobody listens on."""
    import socket
    import subprocess
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "registry.yml"
    config.write_text(json.dumps({"version": 0.1, "log": {"level": "error"}, "http": {"addr": f"127.0.0.1:{port}"},
                                  "storage": {"filesystem": {"rootdirectory": str(tmp_path / "data")}}}))
    registry = subprocess.Popen(["/usr/bin/docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    from corral.agent.flags import parse

    async def scenario():
        async with InProcessAgent(parse(agent_argv("--containerizers=mesos,docker"), {})) as a:
            for _ in range(500):
                try:
                    socket.create_connection(("127.0.0.1", port), 0.1).close()
                    break
                except OSError:
                    await asyncio.sleep(0.01)
            missing = {"type": "DOCKER", "docker": {"image": f"127.0.0.1:{port}/corral-test/absent:1"}}
            status, text = await a.call(launch("missing", "true", container=missing))
            assert status == 404 and "corral-test/absent:1" in text, text
            down = {"type": "DOCKER", "docker": {"image": "127.0.0.1:1/corral-test/absent:1"}}
            status, text = await a.call(launch("down", "true", container=down))
            assert status == 503 and "could not be pulled" in text, text
            malformed = {"type": "DOCKER", "docker": {"image": "Not/A:Valid:Reference"}}
            status, text = await a.call(launch("malformed", "true", container=malformed))
            assert status == 400 and "invalid reference format" in text, text
            assert a.agent.records == {} and a.agent.allocator.held == {}
    try:
        asyncio.run(scenario())
    finally:
        registry.terminate()
        registry.wait()


def test_sigterm_does_not_wait_for_a_docker_pull(agent_argv):
    """Issue 9: SIGTERM stops the agent at once whatever is open, a pull from a registry that
    never answers (a loopback listener that accepts nothing) included."""
    import signal
    import socket
    import threading
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        agent = AgentProcess(agent_argv("--containerizers=mesos,docker"))
        stuck = {"type": "DOCKER", "docker": {"image": f"127.0.0.1:{silent.getsockname()[1]}/corral-test/stuck:1"}}
        answers = []

        def call():
            try:
                answers.append(agent.call(launch("stuck", "true", container=stuck), timeout=60))
            except OSError as e:        # the connection closed unanswered
                answers.append(e)
        caller = threading.Thread(target=call)
        caller.start()
        time.sleep(1.0)                 # the pull is under way
        assert answers == []
        agent.proc.send_signal(signal.SIGTERM)
        assert agent.proc.wait(5) == 0
        agent.proc.stderr.close()
        caller.join(10)
        assert len(answers) == 1 and not (isinstance(answers[0], tuple) and answers[0][0] == 200)
    successor = AgentProcess(agent_argv("--containerizers=mesos,docker"))
    assert successor.state()["containers"] == []     # the launch cut short is forgotten
    assert successor.stop() == 0


def test_a_docker_container_with_a_tty_logs_its_one_stream_and_is_not_attached_through_the_api(agent_argv, corral):
    from corral.agent.flags import parse
    tty = {**DOCKER, "tty_info": {"window_size": {"rows": 24, "columns": 80}}}

    async def scenario():
        async with InProcessAgent(parse(agent_argv("--containerizers=docker"), {})) as a:
            command = "test -t 0 && test -t 1 && echo tty; echo err >&2; sleep 1"
            assert await a.call(launch("tty", command, [], tty)) == (200, "")
            status, answer = await a.call({"type": "ATTACH_CONTAINER_OUTPUT",
                                           "attach_container_output": {"container_id": {"value": "tty"}}})
            assert status == 400 and "the agent does not attach to docker containers" in str(answer), answer
            await a.call(by_id("WAIT_CONTAINER", "tty"))
            sandbox = Path(corral.work_dir, "containers", "tty")
            # A terminal's one stream, its line ends: all of it the sandbox's stdout.
            assert ((sandbox / "stdout").read_bytes(), (sandbox / "stderr").read_bytes()) == (b"tty\r\nerr\r\n", b"")
            assert (await a.call(by_id("REMOVE_CONTAINER", "tty")))[0] == 200
    asyncio.run(scenario())
