"""Hostile and careless clients of the agent's API (issue 9): a launch that would stop the launch
server, a launch server killed under the agent, images that are not there, launches that ask
for too little memory, clients that open WAITs and go, and a SIGTERM with WAITs open."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time

import pytest

from tests.agent.agentkit import InProcessAgent, _state, until
from corral.types import TASK_FINISHED, TASK_KILLED, TASK_RUNNING, ContainerConfig, CorralError, Unavailable


def launch(container_id, command, resources=None, **extra):
    call = {"container_id": {"value": container_id}, "command": {"value": command}, **extra}
    if resources is not None:
        call["resources"] = resources
    return {"type": "LAUNCH_CONTAINER", "launch_container": call}


def by_id(call, container_id):
    return {"type": call, call.lower(): {"container_id": {"value": container_id}}}


def scalar(name, value):
    return {"name": name, "type": "SCALAR", "scalar": {"value": value}}


def image(name):
    return {"type": "MESOS", "mesos": {"image": {"type": "DOCKER", "docker": {"name": name}}}}


async def finish(a, *ids):
    for cid in ids:
        await a.call(by_id("KILL_CONTAINER", cid))
        await a.call(by_id("WAIT_CONTAINER", cid))
        assert (await a.call(by_id("REMOVE_CONTAINER", cid)))[0] == 200


def wait_dead(pid: int, timeout: float = 10) -> None:
    """Until `pid` has ended (a zombie of its parent's, or gone)."""
    deadline = time.monotonic() + timeout
    while _state(pid) != "Z":
        assert time.monotonic() < deadline, f"{pid} still runs"
        time.sleep(0.01)


# -- the launch server -------------------------------------------------------------------------

@pytest.mark.parametrize("name", [5, ["busybox"], {"a": 1}])
def test_an_image_name_that_is_not_a_string_fails_alone(agent_flags, tmp_path, name):
    async def scenario():
        async with InProcessAgent(agent_flags("--image_providers=docker", f"--docker_registry={tmp_path}")) as a:
            server = a.containerizer.launch_server.pid
            status, text = await a.call(launch("bad", "true", container=image(name)))
            assert status == 400 and '"launch_container.container.mesos.image.docker.name" must be a string' in text
            assert (await a.call(launch("good", "exit 0")))[0] == 200
            _, waited = await a.call(by_id("WAIT_CONTAINER", "good"))
            assert waited["wait_container"]["state"] == TASK_FINISHED
            assert a.containerizer.launch_server.pid == server
            await finish(a, "good")
    asyncio.run(scenario())


def test_the_launch_server_survives_any_request_that_reaches_it(agent_flags, tmp_path):
    """Past the API's checks too: what the launch server is asked, however wrong, fails alone."""
    async def scenario():
        async with InProcessAgent(agent_flags("--image_providers=docker", f"--docker_registry={tmp_path}")) as a:
            server = a.containerizer.launch_server
            pid = server.pid
            for hostile in (ContainerConfig(argv=["true"], image={"type": "DOCKER", "name": 5}),
                            ContainerConfig(argv=["true"], image={"type": "DOCKER"}),
                            ContainerConfig(argv=["true"], user="no\0body")):
                with pytest.raises(CorralError) as raised:
                    await server.launch("hostile", hostile)
                assert not isinstance(raised.value, Unavailable), raised.value
            assert server.pid == pid and _state(pid) != "Z"
            assert (await a.call(launch("after", "exit 0")))[0] == 200
            _, waited = await a.call(by_id("WAIT_CONTAINER", "after"))
            assert waited["wait_container"]["state"] == TASK_FINISHED
            await finish(a, "after")
    asyncio.run(scenario())


def holds_the_lock(pid: int, work_dir: str) -> bool:
    fds = os.listdir(f"/proc/{pid}/fd")
    return f"{work_dir}/meta/lock" in {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in fds}


def test_a_killed_launch_server_is_replaced_and_the_agent_never_answers_500(agent_process, corral):
    agent = agent_process()
    assert agent.call(launch("before", "sleep 100"))[0] == 200
    for round in range(2):       # the first server, forked; then one that the agent spawned itself
        old = agent.launch_server
        assert holds_the_lock(old, corral.work_dir)     # a new agent waits for the launch it is in
        os.kill(old, signal.SIGKILL)
        wait_dead(old)
        assert agent.call({"type": "GET_HEALTH"}) == (200, {"type": "GET_HEALTH", "get_health": {"healthy": True}})
        assert agent.call(launch(f"after{round}", "exit 0"))[0] == 200
        assert agent.call(by_id("WAIT_CONTAINER", f"after{round}"))[1]["wait_container"]["state"] == TASK_FINISHED
        assert agent.call(by_id("REMOVE_CONTAINER", f"after{round}"))[0] == 200
        children = open(f"/proc/{agent.proc.pid}/task/{agent.proc.pid}/children").read().split()
        assert old not in map(int, children) and len(children) == 1
        agent.launch_server = int(children[0])
    assert holds_the_lock(agent.launch_server, corral.work_dir)
    [before] = agent.state()["containers"]
    assert before["statuses"][-1]["state"] == TASK_RUNNING     # the killed server's container runs on
    assert agent.call(by_id("KILL_CONTAINER", "before"))[0] == 200
    assert agent.call(by_id("WAIT_CONTAINER", "before"))[1]["wait_container"]["state"] == TASK_KILLED
    assert agent.call(by_id("REMOVE_CONTAINER", "before"))[0] == 200
    assert agent.stop() == 0      # and the spawned server goes with the agent (stop() checks)


def test_a_launch_naming_thousands_of_resources_is_refused_without_stalling_the_agent(agent_flags):
    """Summing a request's resources was quadratic: 17,000 in a 1 MB body held the agent's loop
    for half a minute (bounded here at 20 s, ten times what the linear sum takes on a busy host)."""
    many = [scalar(f"r{i}", 1) for i in range(17_000)]

    async def scenario():
        async with InProcessAgent(agent_flags()) as a:
            status, text = await asyncio.wait_for(a.call(launch("many", "true", many)), 20)
            assert status == 409 and text.startswith("not enough free resources for many: r0: asked 1, none free;")
            assert text.strip().endswith("; and 16990 more"), text[-200:]
            assert a.agent.records == {} and a.agent.allocator.held == {}
    asyncio.run(scenario())


def test_an_agent_that_cannot_replace_its_launch_server_says_it_is_unhealthy(agent_flags, monkeypatch, tmp_path):
    """The fallback: no 500s while healthy. (The interpreter gone from under the agent is
    played by pointing sys.executable, which the agent spawns a new server with, elsewhere.)"""
    async def scenario():
        async with InProcessAgent(agent_flags()) as a:
            pid = a.containerizer.launch_server.pid
            os.kill(pid, signal.SIGKILL)
            await until(lambda: _state(pid) == "Z")
            monkeypatch.setattr("sys.executable", str(tmp_path / "no-python"))
            assert await a.call({"type": "GET_HEALTH"}) == (200, {"type": "GET_HEALTH",
                                                                   "get_health": {"healthy": False}})
            async with a.http.get(a.url + "/health") as r:
                assert r.status == 503
            status, text = await a.call(launch("while-down", "true"))
            assert status == 503 and "cannot start a new launch server" in text, text
            monkeypatch.undo()
            assert (await a.call({"type": "GET_HEALTH"}))[1]["get_health"]["healthy"] is True
            assert (await a.call(launch("after", "exit 0")))[0] == 200
            await finish(a, "after")
    asyncio.run(scenario())


def test_a_launch_server_killed_in_a_launch_fails_that_launch_alone_and_leaves_nothing(agent_flags, corral):
    """A pull from a registry that never answers (a loopback listener that accepts nothing) keeps
    the server in the launch while it is killed."""
    async def scenario(port):
        async with InProcessAgent(agent_flags("--image_providers=docker", f"--docker_registry=127.0.0.1:{port}")) as a:
            old = a.containerizer.launch_server.pid
            stuck = asyncio.ensure_future(a.call(launch("stuck", "true", container=image("busybox"))))
            containers = os.path.join(corral.runtime_dir, "containers")
            await until(lambda: os.path.exists(os.path.join(containers, "stuck")))
            os.kill(old, signal.SIGKILL)
            status, text = await stuck
            assert status == 503 and "the launch server ended during this launch" in text, text
            assert os.listdir(containers) == [] and a.agent.records == {} and a.agent.allocator.held == {}
            assert (await a.call(launch("next", "exit 0")))[0] == 200
            _, waited = await a.call(by_id("WAIT_CONTAINER", "next"))
            assert waited["wait_container"]["state"] == TASK_FINISHED
            assert a.containerizer.launch_server.pid != old
            await finish(a, "next")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        asyncio.run(scenario(silent.getsockname()[1]))


def test_a_launch_whose_client_hung_up_fails_quietly(agent_flags, corral, caplog):
    """The launch runs to its end without its client; an error at that end is nobody's to log."""
    import gc

    import aiohttp

    async def scenario(port):
        async with InProcessAgent(agent_flags("--image_providers=docker", f"--docker_registry=127.0.0.1:{port}")) as a:
            with pytest.raises(asyncio.TimeoutError):
                await a.call(launch("gone", "true", container=image("busybox")),
                             timeout=aiohttp.ClientTimeout(total=0.3))
            os.kill(a.containerizer.launch_server.pid, signal.SIGKILL)
            await until(lambda: "gone" not in a.agent.records)
            assert a.agent.allocator.held == {} and os.listdir(os.path.join(corral.runtime_dir, "containers")) == []
            gc.collect()
            await asyncio.sleep(0.1)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        asyncio.run(scenario(silent.getsockname()[1]))
    gc.collect()
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not logged, logged


# -- images ----------------------------------------------------------------------------------

def test_an_image_that_is_not_there_is_a_404_and_a_registry_down_a_503(agent_flags, tmp_path):
    async def missing():
        async with InProcessAgent(agent_flags("--image_providers=docker", f"--docker_registry={tmp_path}")) as a:
            status, text = await a.call(launch("missing", "true", container=image("nothing-here")))
            assert status == 404 and "nothing-here" in text, text
    asyncio.run(missing())      # its threads end with its loop: the next agent forks anew

    async def unreachable(port):
        async with InProcessAgent(agent_flags("--image_providers=docker", f"--docker_registry=127.0.0.1:{port}")) as a:
            status, text = await a.call(launch("unreachable", "true", container=image("busybox")))
            assert status == 503 and f"cannot reach registry 127.0.0.1:{port}" in text, text
            assert a.agent.records == {} and a.agent.allocator.held == {}
    with socket.socket() as down:       # a loopback port that nobody listens on
        down.bind(("127.0.0.1", 0))
        asyncio.run(unreachable(down.getsockname()[1]))


# -- memory ----------------------------------------------------------------------------------

@pytest.mark.parametrize("resources, held", [(None, 32), ([scalar("cpus", 0.1)], 32), ([scalar("mem", 1)], 32),
                                             ([scalar("mem", 31.5)], 32), ([scalar("mem", 48)], 48)])
def test_a_launch_with_too_little_memory_gets_mesos_minimum_allocated_and_limited(agent_flags, corral,
                                                                                 resources, held):
    from corral.cgroups import cgroup_for

    async def scenario():
        async with InProcessAgent(agent_flags()) as a:
            assert (await a.call(launch("small", "sleep 100", resources)))[0] == 200
            assert a.agent.allocator.held["small"].get("mem") == held
            [small] = (await a.state())["containers"]
            assert scalar("mem", held) in small["resources"]
            limit = cgroup_for("memory", f"{corral.cgroups_root}/small").read("memory.limit_in_bytes")
            assert int(limit) == held * 1024 * 1024
            await finish(a, "small")
    asyncio.run(scenario())


def test_the_memory_minimum_counts_against_what_is_free(agent_flags):
    async def scenario():
        async with InProcessAgent(agent_flags()) as a:       # mem:1024
            assert (await a.call(launch("most", "sleep 100", [scalar("mem", 1000)])))[0] == 200
            status, text = await a.call(launch("none", "sleep 100"))
            assert (status, text.strip()) == (409, "not enough free resources for none: mem: asked 32, 24 free")
            await finish(a, "most")
    asyncio.run(scenario())


# -- clients that wait and go --------------------------------------------------------------------

async def open_wait(url: str, container_id: str):
    """A WAIT sent on a raw connection, its answer not read."""
    host, port = url.rsplit("/", 1)[1].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    body = f'{{"type": "WAIT_CONTAINER", "wait_container": {{"container_id": {{"value": "{container_id}"}}}}}}'
    writer.write((f"POST /api/v1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n{body}").encode())
    await writer.drain()
    return reader, writer


async def metric(a, name: str) -> float:
    _, metrics = await a.call({"type": "GET_METRICS"})
    return {m["name"]: m["value"] for m in metrics["get_metrics"]["metrics"]}[name]


def test_abandoned_waits_are_dropped_with_nothing_kept_and_nothing_logged(agent_flags, caplog):
    caplog.set_level(logging.DEBUG)

    async def scenario():
        async with InProcessAgent(agent_flags()) as a:
            assert (await a.call(launch("long", "sleep 100")))[0] == 200
            tasks = len(asyncio.all_tasks())
            connections = [await open_wait(a.url, "long") for _ in range(300)]
            await until(lambda: len(asyncio.all_tasks()) >= tasks + 300)     # a handler each, waiting
            for _, writer in connections:
                writer.close()                      # the clients hang up
            for _, writer in connections:
                await writer.wait_closed()
            await until(lambda: len(asyncio.all_tasks()) <= tasks)     # no handler lives on
            assert await metric(a, "corral/waits_open") == 0
            connections = [await open_wait(a.url, "long") for _ in range(5)]      # the metric counts them
            await until(lambda: len(asyncio.all_tasks()) >= tasks + 5)
            assert await metric(a, "corral/waits_open") == 5
            for _, writer in connections:
                writer.close()
            await until(lambda: a.agent.waiting == 0)
            assert (await a.call(by_id("KILL_CONTAINER", "long")))[0] == 200
            _, waited = await asyncio.wait_for(a.call(by_id("WAIT_CONTAINER", "long")), 5)
            assert waited["wait_container"]["state"] == TASK_KILLED
            assert (await a.call(by_id("REMOVE_CONTAINER", "long")))[0] == 200
    asyncio.run(scenario())
    logged = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert not logged, [r.getMessage() for r in logged]


def test_sigterm_stops_the_agent_at_once_with_waits_open_and_the_next_agent_takes_over(agent_process):
    agent = agent_process()
    assert agent.call(launch("runs", "sleep 100"))[0] == 200
    waiters = []
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", agent.port))
        body = b'{"type": "WAIT_CONTAINER", "wait_container": {"container_id": {"value": "runs"}}}'
        s.sendall(b"POST /api/v1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        waiters.append(s)
    half = socket.create_connection(("127.0.0.1", agent.port))     # and one that sent half its headers
    half.sendall(b"POST /api/v1 HTTP/1.1\r\nHost: x\r\n")
    time.sleep(0.2)
    agent.proc.send_signal(signal.SIGTERM)
    assert agent.proc.wait(5) == 0           # aiohttp's shutdown timeout would have held it 60 s
    assert agent.proc.stderr.read().endswith("stopping on SIGTERM; containers left running: 1\n")
    agent.proc.stderr.close()
    for s in [*waiters, half]:
        s.settimeout(5)
        try:
            assert s.recv(65536) == b""      # closed, not answered as if the container had ended
        except ConnectionResetError:
            pass
        s.close()
    successor = agent_process()              # at once: nothing holds the lock
    [runs] = successor.state()["containers"]
    assert runs["statuses"][-1]["state"] == TASK_RUNNING
    assert successor.call(by_id("KILL_CONTAINER", "runs"))[0] == 200
    assert successor.call(by_id("WAIT_CONTAINER", "runs"))[1]["wait_container"]["state"] == TASK_KILLED
    assert successor.call(by_id("REMOVE_CONTAINER", "runs"))[0] == 200
