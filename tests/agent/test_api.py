"""The HTTP API over a real agent, real containers and real sockets on loopback. The agent runs
in the test's process, whose HTTP client makes threads: launches go through the launch server."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import signal

import aiohttp
import pytest

from tests.agent.agentkit import InProcessAgent, until
from corral.types import (REASON_CONTAINER_LIMITATION, TASK_FAILED, TASK_FINISHED, TASK_KILLED, TASK_RUNNING,
                          TASK_STARTING)


def launch(container_id, command, resources=None, user=None, **extra):
    call = {"container_id": {"value": container_id}, "command": {"shell": True, "value": command}, **extra}
    if user is not None:
        call["command"]["user"] = user
    if resources is not None:
        call["resources"] = resources
    return {"type": "LAUNCH_CONTAINER", "launch_container": call}


def by_id(call, container_id, **extra):
    return {"type": call, call.lower(): {"container_id": {"value": container_id}, **extra}}


def scalar(name, value):
    return {"name": name, "type": "SCALAR", "scalar": {"value": value}}


def test_health_version_flags(agent_flags):
    async def scenario():
        async with InProcessAgent(agent_flags()) as a:
            health = await a.call({"type": "GET_HEALTH"})
            assert health == (200, {"type": "GET_HEALTH", "get_health": {"healthy": True}})
            status, version = await a.call({"type": "GET_VERSION"})
            assert status == 200 and version["get_version"]["version_info"]["version"]
            status, flags = await a.call({"type": "GET_FLAGS"})
            assert {"name": "strict", "value": "true"} in flags["get_flags"]["flags"]
            async with a.http.get(a.url + "/health") as r:
                assert r.status == 200
            assert len(os.listdir("/proc/self/task")) > 1, "the agent's process was meant to have threads"
    asyncio.run(scenario())


def test_launch_wait_containers_remove(agent_flags, corral):
    async def scenario():
        async with InProcessAgent(agent_flags()) as a:
            body = launch("c1", 'sleep 0.2; echo "$PORT0 $PORT1 $PORTS"', [scalar("cpus", 0.5), scalar("mem", 64),
                                                                  scalar("ports", 2)])
            assert (await a.call(body))[0] == 200
            assert (await a.call(body))[0] == 202                 # already exists
            assert list(a.agent.allocator.held) == ["c1"]
            status, waited = await a.call(by_id("WAIT_CONTAINER", "c1"))
            assert status == 200
            assert waited == {"type": "WAIT_CONTAINER", "wait_container": {
                "exit_status": 0, "state": TASK_FINISHED, "reason": None, "message": "Command exited with status 0"}}
            assert await a.call(by_id("WAIT_CONTAINER", "c1")) == (200, waited)     # and again, until removed
            low = agent_flags.ports[0]
            with open(os.path.join(corral.work_dir, "containers", "c1", "stdout")) as f:
                assert f.read() == f"{low} {low + 1} {low},{low + 1}\n"
            [c1] = (await a.state())["containers"]
            assert [s["state"] for s in c1["statuses"]] == [TASK_STARTING, TASK_RUNNING, TASK_FINISHED]
            # An ended container holds nothing once its release (the destroy, off the loop) is done:
            # WAIT's answer may come before it, as the agent's order says.
            await until(lambda: a.agent.allocator.held == {})
            assert not os.path.exists(os.path.join(corral.runtime_dir, "containers", "c1"))
            assert (await a.call(by_id("REMOVE_CONTAINER", "c1")))[0] == 200
            assert not os.path.exists(os.path.join(corral.work_dir, "containers", "c1"))
            assert (await a.call(by_id("WAIT_CONTAINER", "c1")))[0] == 404
            assert (await a.call(by_id("REMOVE_CONTAINER", "c1")))[0] == 404
    asyncio.run(scenario())


class HeldOpens:
    """Holds the first open(2) of a directory (fanotify's permission event, as an on-access
    scanner does) until release() or `limit` seconds; opens after it pass. `gave_up`: the limit
    ended the hold."""

    def __init__(self, path: str, limit: float = 20.0):
        import ctypes
        import threading
        libc = ctypes.CDLL(None, use_errno=True)
        libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]
        FAN_CLOEXEC, FAN_CLASS_CONTENT, FAN_MARK_ADD, FAN_OPEN_PERM, FAN_ONDIR = 0x1, 0x4, 0x1, 0x10000, 0x40000000
        self.fd = libc.fanotify_init(FAN_CLOEXEC | FAN_CLASS_CONTENT, os.O_RDONLY)
        if self.fd < 0 or libc.fanotify_mark(self.fd, FAN_MARK_ADD, FAN_OPEN_PERM | FAN_ONDIR, -100,
                                             path.encode()) != 0:
            error = ctypes.get_errno()
            if self.fd >= 0:
                os.close(self.fd)
            if error in (errno.EINVAL, errno.ENOSYS):
                pytest.skip("this kernel has no fanotify permission events (CONFIG_FANOTIFY_ACCESS_PERMISSIONS)")
            raise OSError(error, f"fanotify on {path}")
        self.limit = limit
        self.held, self.released = threading.Event(), threading.Event()
        self.gave_up = False
        self.stop_r, self.stop_w = os.pipe()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        import select
        import struct
        while True:
            ready, _, _ = select.select([self.fd, self.stop_r], [], [])
            if self.stop_r in ready:
                return
            data = os.read(self.fd, 4096)
            for offset in range(0, len(data), 24):      # struct fanotify_event_metadata, one after another
                event_fd = struct.unpack_from("IBBHQii", data, offset)[5]
                if not self.held.is_set():
                    self.held.set()
                    self.gave_up = not self.released.wait(self.limit)
                os.write(self.fd, struct.pack("iI", event_fd, 1))     # FAN_ALLOW
                os.close(event_fd)

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.release()
        os.write(self.stop_w, b"x")
        self.thread.join()
        for fd in (self.fd, self.stop_r, self.stop_w):
            os.close(fd)            # the fanotify group's end allows any open still waiting


def test_remove_deletes_the_sandbox_while_the_agent_serves_on(agent_flags, corral, tmp_path):
    """A sandbox can be large (whatever the task wrote): the agent removes it off its loop. Its
    removal is held at its first step (the open of the sandbox); meanwhile other calls are
    answered, and REMOVE_CONTAINER answers only once the sandbox is gone."""
    HeldOpens(str(tmp_path)).close()        # skips first where the kernel cannot hold an open
    async def scenario():
        async with InProcessAgent(agent_flags()) as a:
            assert (await a.call(launch("full", "mkdir -p a/b && echo x > a/b/c")))[0] == 200
            assert (await a.call(by_id("WAIT_CONTAINER", "full")))[0] == 200
            sandbox = os.path.join(corral.work_dir, "containers", "full")
            hold = HeldOpens(sandbox)
            try:
                remove = asyncio.ensure_future(a.call(by_id("REMOVE_CONTAINER", "full")))
                assert await asyncio.to_thread(hold.held.wait, 30), "the sandbox's removal never started"
                assert (await a.call({"type": "GET_HEALTH"}))[0] == 200
                assert not hold.gave_up, "the agent answered nothing while it removed a sandbox"
                assert not remove.done(), "REMOVE_CONTAINER answered before its sandbox was gone"
                hold.release()
                assert (await remove)[0] == 200
            finally:
                hold.close()
            assert not os.path.exists(sandbox)
            assert (await a.call(by_id("WAIT_CONTAINER", "full")))[0] == 404
    asyncio.run(scenario())


def test_kill_is_sigkill_by_default_and_remove_wants_an_ended_container(agent_flags):
    async def scenario():
        async with InProcessAgent(agent_flags()) as a:
            assert (await a.call(launch("long", "trap '' TERM; sleep 100")))[0] == 200
            status, text = await a.call(by_id("REMOVE_CONTAINER", "long"))
            assert status == 400 and "still running" in text
            assert (await a.call(by_id("KILL_CONTAINER", "long")))[0] == 200
            _, waited = await a.call(by_id("WAIT_CONTAINER", "long"))
            end = waited["wait_container"]
            assert end["state"] == TASK_KILLED and os.WTERMSIG(end["exit_status"]) == signal.SIGKILL
            assert (await a.call(by_id("KILL_CONTAINER", "nobody")))[0] == 404
            assert (await a.call(by_id("REMOVE_CONTAINER", "long")))[0] == 200
    asyncio.run(scenario())


def test_a_waiter_that_goes_away_does_not_stop_the_watch(agent_flags):
    async def scenario():
        async with InProcessAgent(agent_flags()) as a:
            await a.call(launch("w", "sleep 0.5; exit 3"))
            with pytest.raises(asyncio.TimeoutError):
                await a.call(by_id("WAIT_CONTAINER", "w"), timeout=aiohttp.ClientTimeout(total=0.1))
            _, waited = await a.call(by_id("WAIT_CONTAINER", "w"))
            assert (waited["wait_container"]["state"], os.WEXITSTATUS(waited["wait_container"]["exit_status"])) == \
                (TASK_FAILED, 3)
            await a.call(by_id("REMOVE_CONTAINER", "w"))
    asyncio.run(scenario())


def test_a_launch_beyond_the_free_resources_is_refused_naming_what_is_short(agent_flags):
    async def scenario():
        async with InProcessAgent(agent_flags()) as a:
            assert (await a.call(launch("big", "sleep 100", [scalar("cpus", 1.5)])))[0] == 200
            status, text = await a.call(launch("more", "true", [scalar("cpus", 1), scalar("ports", 11),
                                                                scalar("gpus", 1)]))
            assert status == 409
            assert text.strip() == ("not enough free resources for more: cpus: asked 1, 0.5 free; "
                                    "gpus: asked 1, none free; ports: asked 11, 10 free")
            _, listed = await a.call({"type": "GET_CONTAINERS", "get_containers": {"show_standalone": True}})
            assert [c["container_id"]["value"] for c in listed["get_containers"]["containers"]] == ["big"]
            await a.call(by_id("KILL_CONTAINER", "big"))
            await a.call(by_id("WAIT_CONTAINER", "big"))
            await a.call(by_id("REMOVE_CONTAINER", "big"))
    asyncio.run(scenario())


@pytest.mark.parametrize("body, headers, status, message", [
    ("{not json", None, 400, "the body is not valid JSON"),
    ("[1]", None, 400, "the body must be a JSON object, not a list"),
    ("{}", None, 400, 'the body must be a JSON object with a "type"'),
    ({"type": "SUBSCRIBE"}, None, 400, "unknown or unsupported call 'SUBSCRIBE'"),
    ({"type": "GET_HEALTH"}, {"Content-Type": "text/plain"}, 415, "send application/json"),
    ("x" * (2 << 20), None, 413, ""),
    ({"type": "WAIT_CONTAINER", "wait_container": {}}, None, 400, '"container_id": {"value": "..."}'),
    (launch("../x", "true"), None, 400, "invalid container id '../x'"),
    (launch("c", "true", [{"name": "cpus", "type": "SCALAR"}]), None, 400, "resource 0 (cpus)"),
    ({"type": "LAUNCH_CONTAINER", "launch_container": {"container_id": {"value": "c"}}}, None, 400,
     'needs "command"'),
    (launch("c", "true", container={"type": "DOCKER", "docker": {"image": "busybox"}}), None, 400,
     "a DOCKER container needs the docker containerizer: start the agent with --containerizers=mesos,docker"),
    (launch("c", "true", container={"type": "DOCKER", "docker": {}}), None, 400,
     'a DOCKER container needs "container.docker.image"'),
    (launch("c", "true", container={"type": "DOCKER", "docker": {"image": "busybox", "network": "BRIDGE"}}),
     None, 400, '"container.docker.network" \'BRIDGE\' is not supported'),
    (launch("c", "true", container={"type": "APPC"}), None, 400, '"container.type" must be MESOS or DOCKER'),
    (by_id("KILL_CONTAINER", "c", signal="SIGNOPE"), None, 400, "invalid signal 'SIGNOPE'"),
    (by_id("KILL_CONTAINER", "c"), None, 404, "no such container: c"),
    ({"type": "LAUNCH_CONTAINER", "launch_container": "x"}, None, 400,
     '"launch_container" must be a JSON object, not a string'),
    ({"type": "LAUNCH_CONTAINER", "launch_container": {
        "container_id": {"value": "c"}, "command": {"value": "true", "environment": {"variables": [{"name": 1}]}}}},
     None, 400, '"launch_container.command.environment.variables[0].name" must be a string, not an integer'),
    ({"type": "LAUNCH_CONTAINER", "launch_container": {
        "container_id": {"value": "c"}, "command": {"shell": False, "value": "/bin/true", "arguments": "x"}}},
     None, 400, '"launch_container.command.arguments" must be a list, not a string'),
    (launch("c", "true", "cpus:1"), None, 400, "must be a list of Resource objects"),
    (launch("c", "true", container="x"), None, 400, '"launch_container.container" must be a JSON object'),
    (launch("c", "true", [{"name": "cpus", "type": "SCALAR", "scalar": {"value": -1}}]), None, 400,
     "not a non-negative number"),
    # issue 9: each of these was a 500
    ({"type": "KILL_CONTAINER", "kill_container": "x"}, None, 400, '"kill_container" must be a JSON object'),
    ({"type": "WAIT_CONTAINER", "wait_container": [1]}, None, 400, '"wait_container" must be a JSON object'),
    ({"type": "REMOVE_CONTAINER", "remove_container": 7}, None, 400, '"remove_container" must be a JSON object'),
    (launch("c", "true", [{"name": "cpus", "type": ["SCALAR"], "scalar": {"value": 1}}]), None, 400,
     "type must be SCALAR, RANGES or SET, not ['SCALAR']"),
    (by_id("WAIT_CONTAINER", "\ud800"), None, 400, '"wait_container.container_id.value" is not valid Unicode'),
    (by_id("KILL_CONTAINER", "c\ud800"), None, 400, "is not valid Unicode"),
    (launch("\udfff", "true"), None, 400, "is not valid Unicode"),
    ("[" * 100_000, None, 400, "the body is not valid JSON: nested too deeply"),
    (launch("c", "true", user=0), None, 400,
     '"launch_container.command.user" must be a string, not an integer'),
    (launch("c", "true", user=["root"]), None, 400, "must be a string, not a list"),
    (launch("c", "true\u0000rm"), None, 400, '"launch_container.command.value" holds a NUL'),
    (launch("c", "true", container={"type": "MESOS", "mesos": {"image": {"type": "DOCKER", "docker": {"name": 5}}}}),
     None, 400, '"launch_container.container.mesos.image.docker.name" must be a string, not an integer'),
    (launch("c", "true", container={"type": "DOCKER", "docker": {"image": ["busybox"]}}), None, 400,
     '"launch_container.container.docker.image" must be a string, not a list'),
    (launch("c", "true", container={"type": ["DOCKER"]}), None, 400, '"launch_container.container.type" must be'),
    (launch("c", "true", container={"hostname": 5}), None, 400, '"launch_container.container.hostname" must be'),
    (launch("c", "true", container={"hostname": "h" * 65}), None, 400,
     '"launch_container.container.hostname" is longer than 64 bytes'),
    (by_id("KILL_CONTAINER", "c", signal=True), None, 400, '"kill_container.signal" must be a name or a number'),
    (by_id("KILL_CONTAINER", "c", signal=[9]), None, 400, '"kill_container.signal" must be a name or a number'),
    ({"type": 5}, None, 400, '"type" must be a string, not an integer'),
])
def test_bad_input_is_a_4xx_with_a_message(agent_flags, corral, body, headers, status, message):
    async def scenario():
        async with InProcessAgent(agent_flags()) as a:
            got, text = await a.call(body, **({"headers": headers} if headers else {}))
            assert (got, message in str(text)) == (status, True), text
            assert a.agent.records == {} and a.agent.allocator.held == {}
            assert not os.listdir(os.path.join(corral.runtime_dir, "containers")) if os.path.exists(
                os.path.join(corral.runtime_dir, "containers")) else True
    asyncio.run(scenario())


def test_credentials(agent_flags, tmp_path):
    (tmp_path / "creds").write_text("ops s3cret\n")

    async def scenario():
        async with InProcessAgent(agent_flags(f"--credentials={tmp_path}/creds")) as a:
            status, text = await a.call({"type": "GET_HEALTH"})
            assert status == 401
            assert (await a.call({"type": "GET_HEALTH"}, auth=("ops", "wrong")))[0] == 401
            assert (await a.call({"type": "GET_HEALTH"}, auth=("ops", "s3cret")))[0] == 200
            for header in ("Basic é", "Basic ////", "Basic", "Bearer x", "Basic " + "A" * 4000):    # a 500 once
                status, text = await a.call({"type": "GET_HEALTH"}, headers={
                    "Content-Type": "application/json", "Authorization": header})
                assert (status, text) == (401, "authentication required\n"), header
    asyncio.run(scenario())


def test_a_container_listening_on_an_agent_port_it_was_not_given_fails(agent_flags):
    low, high = agent_flags.ports
    listen = (f"python3 -c \"import socket, time; s = socket.socket(); s.bind(('127.0.0.1', {high})); "
              f"s.listen(); time.sleep(30)\"")

    async def scenario():
        flags = agent_flags("--isolation=cgroups/cpu,namespaces/pid,network/ports", "--enforce_container_ports",
                            "--container_ports_watch_interval=50ms")
        async with InProcessAgent(flags) as a:
            assert (await a.call(launch("rogue", listen, [scalar("ports", 1)])))[0] == 200
            _, waited = await asyncio.wait_for(a.call(by_id("WAIT_CONTAINER", "rogue")), 10)
            end = waited["wait_container"]
            assert (end["state"], end["reason"]) == (TASK_FAILED, REASON_CONTAINER_LIMITATION)
            assert f"listening on port {high}, not among the ports it was given ([{low}-{low}])" in end["message"]
            await a.call(by_id("REMOVE_CONTAINER", "rogue"))
    asyncio.run(scenario())


def test_state_and_metrics(agent_flags):
    low, high = agent_flags.ports

    async def get(a, path):
        async with a.http.get(a.url + path) as r:
            return r.status, r.headers["Content-Type"], await r.text()

    async def scenario():
        async with InProcessAgent(agent_flags()) as a:
            await a.call(launch("s", "sleep 100", [scalar("cpus", 0.5), scalar("mem", 100), scalar("ports", 2)]))
            _, agent = await a.call({"type": "GET_AGENT"})
            info = agent["get_agent"]["agent_info"]
            assert info["id"]["value"] == a.agent.agent_id and info["resources"] == a.agent.total.to_json()

            status, _, text = await get(a, "/state")
            body = json.loads(text)
            assert status == 200 and body["id"] == a.agent.agent_id
            assert body["resources"] == {"cpus": 2, "disk": 1024, "mem": 1024, "ports": f"[{low}-{high}]"}
            assert body["used_resources"] == {"cpus": 0.5, "mem": 100, "ports": f"[{low}-{low + 1}]"}

            _, _, text = await get(a, "/metrics/snapshot")
            snap = json.loads(text)
            assert (snap["slave/cpus_used"], snap["slave/cpus_percent"], snap["slave/mem_used"]) == (0.5, 0.25, 100)
            assert (snap["slave/tasks_running"], snap["slave/tasks_killed"]) == (1, 0)
            await a.call(by_id("KILL_CONTAINER", "s"))
            await a.call(by_id("WAIT_CONTAINER", "s"))
            # WAIT answers before the release (the destroy, off the loop) frees the resources.
            await until(lambda: "s" not in a.agent.watchers)
            _, metrics = await a.call({"type": "GET_METRICS"})
            named = {m["name"]: m["value"] for m in metrics["get_metrics"]["metrics"]}
            assert (named["slave/tasks_running"], named["slave/tasks_killed"], named["slave/cpus_used"]) == (0, 1, 0)

            status, kind, text = await get(a, "/metrics")
            assert status == 200 and kind.startswith("text/plain")
            assert "# TYPE corral_slave_cpus_total gauge\ncorral_slave_cpus_total 2\n" in text
            assert "corral_slave_tasks_killed 1\n" in text
            await a.call(by_id("REMOVE_CONTAINER", "s"))
    asyncio.run(scenario())


def test_wait_and_kill_during_a_launch_wait_for_it(agent_flags):
    async def scenario():
        async with InProcessAgent(agent_flags()) as a:
            launching = asyncio.ensure_future(a.call(launch("busy", "sleep 100")))
            await until(lambda: "busy" in a.agent.launches or launching.done())
            killed, waited = await asyncio.gather(a.call(by_id("KILL_CONTAINER", "busy")),
                                                  a.call(by_id("WAIT_CONTAINER", "busy")))
            assert ((await launching)[0], killed[0], waited[0]) == (200, 200, 200)
            assert waited[1]["wait_container"]["state"] == TASK_KILLED
            failing = asyncio.ensure_future(a.call(launch("bad", "true", container={"type": "DOCKER"})))
            await until(lambda: "bad" in a.agent.launches or failing.done())
            waited = await a.call(by_id("WAIT_CONTAINER", "bad"))
            assert ((await failing)[0], waited[0]) == (400, 404)     # the launch failed: nothing to wait for
            await a.call(by_id("REMOVE_CONTAINER", "busy"))
    asyncio.run(scenario())


def test_a_launch_whose_caller_goes_away_completes_and_the_next_one_is_not_confused(agent_flags):
    from corral.agent.resources import Resources
    from corral.types import ContainerConfig

    async def scenario():
        async with InProcessAgent(agent_flags()) as a:
            caller = asyncio.ensure_future(a.agent.launch("orphan", ContainerConfig(argv=["sleep", "100"]),
                                                          Resources()))
            await until(lambda: "orphan" in a.agent.launches or caller.done())
            caller.cancel()
            await until(lambda: "orphan" not in a.agent.launches)
            assert a.agent.statuses("orphan")[-1]["state"] == TASK_RUNNING
            assert (await a.call(launch("next", "exit 4")))[0] == 200
            _, waited = await a.call(by_id("WAIT_CONTAINER", "next"))
            assert os.WEXITSTATUS(waited["wait_container"]["exit_status"]) == 4
            for cid in ("orphan", "next"):
                await a.call(by_id("KILL_CONTAINER", cid))
                await a.call(by_id("WAIT_CONTAINER", cid))
                assert (await a.call(by_id("REMOVE_CONTAINER", cid)))[0] == 200
    asyncio.run(scenario())


def test_a_container_from_an_image(agent_flags, corral, tmp_path):
    from corral.provisioner.localimage import write_busybox_tarball
    write_busybox_tarball(str(tmp_path / "images"))
    image = {"type": "MESOS", "mesos": {"image": {"type": "DOCKER", "docker": {"name": "busybox"}}}}

    async def without_providers():
        async with InProcessAgent(agent_flags()) as a:
            status, body = await a.call(launch("no-provider", "true", container=image))
            assert status == 400 and "--image_providers=docker" in json.dumps(body)
    asyncio.run(without_providers())     # its threads end with its loop: the next agent forks anew

    async def scenario():
        async with InProcessAgent(agent_flags("--image_providers=docker",
                                              f"--docker_registry={tmp_path / 'images'}")) as a:
            assert (await a.call(launch("img", "echo $(echo /*) > $MESOS_SANDBOX/out", container=image)))[0] == 200
            status, waited = await a.call(by_id("WAIT_CONTAINER", "img"))
            assert waited["wait_container"]["state"] == TASK_FINISHED, waited
            with open(os.path.join(corral.work_dir, "containers", "img", "out")) as f:
                assert f.read() == "/bin /dev /etc /mnt /proc /root /sys /tmp\n"
            assert (await a.call(by_id("REMOVE_CONTAINER", "img")))[0] == 200
            assert os.listdir(os.path.join(corral.work_dir, "provisioner", "containers")) == []
    asyncio.run(scenario())


def test_limits_beyond_what_the_kernel_counts_are_refused_before_anything_is_held(agent_flags, corral):
    async def scenario():
        async with InProcessAgent(agent_flags("--resources=cpus:1e30;mem:1e30")) as a:
            for resources, message in (([scalar("cpus", 1e30)], "cpus must be a positive number at most 65536"),
                                       ([scalar("mem", 1e30)], "mem must be a positive number of MB at most")):
                status, text = await a.call(launch("huge", "true", resources))
                assert (status, message in str(text)) == (400, True), text
                assert a.agent.records == {} and a.agent.allocator.held == {}
            assert (await a.call(launch("fine", "true", [scalar("cpus", 1), scalar("mem", 64)])))[0] == 200
            await a.call(by_id("WAIT_CONTAINER", "fine"))
            await a.call(by_id("REMOVE_CONTAINER", "fine"))
    asyncio.run(scenario())


def test_a_hostname_the_kernel_would_refuse_is_a_400(agent_flags):
    async def scenario():
        async with InProcessAgent(agent_flags()) as a:
            for hostname in ("h" * 65, "two words", "x\ny"):
                status, text = await a.call(launch("h", "true", container={"type": "MESOS", "hostname": hostname}))
                assert (status, "hostname" in str(text)) == (400, True), text
                assert a.agent.records == {} and a.agent.allocator.held == {}
    asyncio.run(scenario())


def test_a_signal_number_in_other_digits_is_a_400(agent_flags):
    async def scenario():
        async with InProcessAgent(agent_flags()) as a:
            status, text = await a.call(by_id("KILL_CONTAINER", "c", signal="\u00b2"))
            assert (status, "invalid signal" in str(text)) == (400, True), text
    asyncio.run(scenario())
