"""Mesos's v1 agent calls beyond the containers' own, over a real agent and real sandboxes: every
reply parsed strictly as agent.proto's Response (agent_v1.py); the sandboxes' files through the
API and through /files/read and /files/browse, never out of a sandbox; routing as libprocess's."""

from __future__ import annotations

import asyncio
import base64
import os
import stat
import time

import pytest

from corral.containerizers.mesos import supervisor
from tests.agent.agent_v1 import check, check_reply
from tests.agent.agentkit import InProcessAgent, until


def launch(container_id, command):
    return {"type": "LAUNCH_CONTAINER", "launch_container": {
        "container_id": {"value": container_id}, "command": {"shell": True, "value": command}}}


async def get(a, endpoint, **params):
    async with a.http.get(a.url + endpoint, params=params) as r:
        return r.status, (await r.json() if r.content_type == "application/json" else await r.text())


async def sandbox_with_files(a, container_id="c1"):
    """A container whose sandbox holds a file, a link in and links out, a FIFO, a subdirectory."""
    script = ("printf 'hello sandbox' > greeting; mkdir sub; echo deep > sub/inner; ln -s greeting inside; "
              "ln -s /etc/hostname outside; ln -s ../../.. up; ln -s sub/../greeting roundabout; mkfifo pipe")
    assert (await a.call(launch(container_id, script)))[0] == 200
    assert (await a.call({"type": "WAIT_CONTAINER", "wait_container": {"container_id": {"value": container_id}}}))[0] \
        == 200
    return os.path.join(os.path.abspath(a.agent.flags.work_dir), "containers", container_id)


def test_read_file_and_list_files(agent_flags):
    async def scenario():
        async with InProcessAgent(agent_flags()) as a:
            sandbox = await sandbox_with_files(a)
            read = {"type": "READ_FILE", "read_file": {"path": sandbox + "/greeting", "offset": 6}}
            status, reply = await a.call(read)
            assert status == 200 and check_reply(reply).read_file.data == b"sandbox"
            assert reply["read_file"]["size"] == len("hello sandbox")
            read["read_file"].update(offset="0", length=5)       # a uint64 as protobuf's JSON may write it
            assert base64.b64decode((await a.call(read))[1]["read_file"]["data"]) == b"hello"
            read["read_file"].update(offset=100)                 # past the end: the size, no data (as Mesos)
            assert check_reply((await a.call(read))[1]).read_file.data == b""
            for inside in ("inside", "roundabout", "sub/../greeting"):     # links that stay inside are followed
                read["read_file"].update(path=f"{sandbox}/{inside}", offset=0, length=None)
                assert check_reply((await a.call(read))[1]).read_file.data == b"hello sandbox", inside

            status, reply = await a.call({"type": "LIST_FILES", "list_files": {"path": sandbox}})
            listed = check_reply(reply).list_files.file_infos
            assert status == 200 and [i.path for i in listed] == [f"{sandbox}/{name}" for name in sorted(
                ["greeting", "sub", "inside", "outside", "up", "roundabout", "pipe", "stdout", "stderr"])]
            by_name = {os.path.basename(i.path): i for i in listed}
            info = os.lstat(f"{sandbox}/greeting")
            assert by_name["greeting"].size == info.st_size and by_name["greeting"].mode == info.st_mode
            assert by_name["greeting"].mtime.nanoseconds == int(info.st_mtime) * 10**9
            assert stat.S_ISLNK(by_name["outside"].mode) and stat.S_ISDIR(by_name["sub"].mode)
            assert by_name["greeting"].uid == "root"
            _, reply = await a.call({"type": "LIST_FILES", "list_files": {"path": sandbox + "/sub/"}})
            assert [i.path for i in check_reply(reply).list_files.file_infos] == [sandbox + "/sub/inner"]
    asyncio.run(scenario())


@pytest.mark.parametrize("call,path,offset,status,says", [
    ("READ_FILE", "/outside", 0, 400, "inaccessible"),            # a link out of the sandbox
    ("READ_FILE", "/up/etc/hostname", 0, 400, "inaccessible"),    # a link up and out
    ("READ_FILE", "/../../../../etc/hostname", 0, 400, "inaccessible"),
    ("LIST_FILES", "/up", None, 400, "inaccessible"),
    ("LIST_FILES", "/..", None, 400, "inaccessible"),
    ("READ_FILE", "/pipe", 0, 400, "not a regular file"),        # a FIFO would hold the reader
    ("READ_FILE", "/sub", 0, 400, "cannot read a directory"),
    ("LIST_FILES", "/greeting", None, 400, "not a directory"),
    ("READ_FILE", "/missing", 0, 404, "no such file"),
    ("READ_FILE", "/greeting/below", 0, 404, "no such file"),
    ("READ_FILE", "/greeting", -1, 400, "must be an integer"),
    ("READ_FILE", "/greeting", 1 << 64, 400, "must be an integer"),
    ("READ_FILE", "/greeting", 1 << 63, 400, "out of range"),
    ("READ_FILE", "/greeting", "12ab", 400, "must be an integer"),
    ("READ_FILE", "/greeting", True, 400, "must be an integer"),
    ("LIST_FILES", "", None, 400, "a \"path\" is needed"),
])
def test_files_bad_input(agent_flags, call, path, offset, status, says):
    async def scenario():
        async with InProcessAgent(agent_flags()) as a:
            sandbox = await sandbox_with_files(a)
            body = {"path": sandbox + path if path else ""}
            if offset is not None:
                body["offset"] = offset
            answer = await a.call({"type": call, call.lower(): body})
            assert answer[0] == status and says in answer[1], answer
    asyncio.run(scenario())


def test_files_outside_any_sandbox(agent_flags):
    async def scenario():
        async with InProcessAgent(agent_flags()) as a:
            await sandbox_with_files(a)
            for path in ("/etc/hostname", os.path.abspath(a.agent.flags.work_dir), "/", "relative/path",
                         os.path.join(os.path.abspath(a.agent.flags.work_dir), "containers", "nobody", "stdout")):
                status, text = await a.call({"type": "READ_FILE", "read_file": {"path": path, "offset": 0}})
                assert status == 404 and "nothing is attached there" in text, (path, text)
            status, text = await a.call({"type": "READ_FILE", "read_file": {"path": "/x\u0000y", "offset": 0}})
            assert status == 400 and "NUL" in text
            status, text = await a.call({"type": "READ_FILE", "read_file": {"path": "/etc/hostname"}})
            assert status == 400 and 'needs "offset"' in text
    asyncio.run(scenario())


def test_files_endpoints(agent_flags):
    """/files/read and /files/browse, as mesos-agent's Files process answers them (its web UI's pailer)."""
    async def scenario():
        async with InProcessAgent(agent_flags()) as a:
            sandbox = await sandbox_with_files(a)
            greeting = sandbox + "/greeting"
            assert await get(a, "/files/read", path=greeting, offset="6") == (200, {"data": "sandbox", "offset": 6})
            assert await get(a, "/files/read", path=greeting, offset="0", length="5") == (
                200, {"data": "hello", "offset": 0})
            # offset=-1 (or none): the size as the offset, no data
            assert await get(a, "/files/read", path=greeting, offset="-1") == (200, {"data": "", "offset": 13})
            assert await get(a, "/files/read", path=greeting) == (200, {"data": "", "offset": 13})
            status, listing = await get(a, "/files/browse", path=sandbox + "/sub")
            info = os.stat(sandbox + "/sub/inner")
            assert status == 200 and listing == [{"path": sandbox + "/sub/inner", "nlink": 1, "size": 5,
                                                  "mtime": float(int(info.st_mtime)), "mode": "-rw-r--r--",
                                                  "uid": "root", "gid": "root"}]
            for endpoint, params, status, says in [
                    ("/files/read", {}, 400, "expecting 'path=value'"),
                    ("/files/read", {"path": sandbox + "/outside"}, 400, "inaccessible"),
                    ("/files/read", {"path": greeting, "offset": "-2"}, 400, "count of bytes"),
                    ("/files/read", {"path": greeting, "length": "x"}, 400, "count of bytes"),
                    ("/files/read", {"path": greeting, "offset": str(1 << 63)}, 400, "out of range"),
                    ("/files/read", {"path": "/etc/passwd"}, 404, "nothing is attached"),
                    ("/files/browse", {"path": sandbox + "/up"}, 400, "inaccessible"),
                    ("/files/browse", {"path": sandbox + "/nothing"}, 404, "no such file")]:
                answer = await get(a, endpoint, **params)
                assert answer[0] == status and says in answer[1], (endpoint, params, answer)
    asyncio.run(scenario())


def test_agent_calls_in_mesos_shapes(agent_flags):
    """The calls that answer with what corral has, or with Mesos's empty lists, parse as agent.proto's."""
    async def scenario():
        async with InProcessAgent(agent_flags()) as a:
            for call in ("GET_HEALTH", "GET_VERSION", "GET_FLAGS", "GET_METRICS", "GET_AGENT", "GET_STATE",
                         "GET_FRAMEWORKS", "GET_EXECUTORS", "GET_TASKS", "GET_OPERATIONS", "GET_LOGGING_LEVEL",
                         "GET_RESOURCE_PROVIDERS"):
                status, reply = await a.call({"type": call})
                assert status == 200, (call, reply)
                check_reply(reply)
            _, reply = await a.call({"type": "GET_AGENT"})
            info = check_reply(reply).get_agent.agent_info
            assert info.id.value == a.agent.agent_id and info.port == a.agent.flags.port
            assert {r.name for r in info.resources} == {"cpus", "mem", "disk", "ports"}
            _, reply = await a.call({"type": "GET_STATE"})
            state = check_reply(reply).get_state
            assert state.HasField("get_tasks") and state.HasField("get_frameworks") and state.HasField("get_executors")
            assert (await a.call({"type": "PRUNE_IMAGES"}))[0] == 200        # no image provider: nothing to do
    asyncio.run(scenario())


def test_logging_level_set_for_a_while(agent_flags):
    import logging

    async def scenario():
        async with InProcessAgent(agent_flags()) as a:
            async def level():
                _, reply = await a.call({"type": "GET_LOGGING_LEVEL"})
                return check_reply(reply).get_logging_level.level
            assert await level() == 0
            set_call = {"type": "SET_LOGGING_LEVEL", "set_logging_level": {"level": 2, "duration": {
                "nanoseconds": 300_000_000}}}
            assert (await a.call(set_call))[0] == 200
            assert await level() == 2 and logging.getLogger("corral").getEffectiveLevel() == logging.DEBUG
            await asyncio.sleep(0.5)
            assert await level() == 0 and logging.getLogger("corral").getEffectiveLevel() == logging.INFO
            for body, says in [({"duration": {"nanoseconds": 1}}, 'needs "level"'),
                               ({"level": 1}, 'needs "duration"'),
                               ({"level": 1, "duration": {}}, 'needs "nanoseconds"'),
                               ({"level": -1, "duration": {"nanoseconds": 1}}, "out of range"),
                               ({"level": 1 << 32, "duration": {"nanoseconds": 1}}, "out of range"),
                               ({"level": 1, "duration": {"nanoseconds": -5}}, "out of range"),
                               ({"level": "high", "duration": {"nanoseconds": 1}}, "must be an integer")]:
                status, text = await a.call({"type": "SET_LOGGING_LEVEL", "set_logging_level": body})
                assert status == 400 and says in text, (body, text)
            assert await level() == 0
    asyncio.run(scenario())


def test_routing_as_libprocess(agent_flags):
    """The longest registered prefix serves; the agent's endpoints answer under slave(1) too."""
    async def scenario():
        async with InProcessAgent(agent_flags()) as a:
            for path in ("/api/v1", "/api/v1/", "/api/v1/operator/anything", "/slave(1)/api/v1",
                         "/slave(1)/api/v1/x/y"):
                async with a.http.post(a.url + path, json={"type": "GET_HEALTH"}) as r:
                    assert r.status == 200 and (await r.json())["get_health"]["healthy"] is True, path
            for path in ("/health", "/slave(1)/health", "/slave(1)/health/x"):
                assert (await get(a, path))[0] == 200, path
            for path in ("/state", "/slave(1)/state", "/slave(1)/state.json", "/state/below"):
                status, body = await get(a, path)
                assert status == 200 and body["id"] == a.agent.agent_id, path
            for path in ("/api/v1x", "/slave(2)/api/v1", "/slave(1)/files/read", "/healthy"):
                assert (await get(a, path))[0] in (404, 405), path
            async with a.http.post(a.url + "/slave(1)/api/v1x", json={"type": "GET_HEALTH"}) as r:
                assert r.status == 404
            async with a.http.head(a.url + "/slave(1)/health") as r:
                assert r.status == 200
    asyncio.run(scenario())


def test_longer_route_still_takes_its_own(agent_flags):
    """A route registered below /api/v1 (the executor API's /api/v1/executor) is not taken by the
    prefix; nor are the master's messages to /slave(1)/<message name>."""
    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request

    from corral.agent import api

    async def executor(request):
        return web.Response()

    async def scenario():
        async with InProcessAgent(agent_flags()) as a:
            app = api.make_app(a.agent)
            app.router.add_post("/api/v1/executor", executor)
            app.router.add_post("/slave(1)/{name}", executor)
            for path, handler in (("/api/v1/executor", executor), ("/api/v1/other", api._call),
                                  ("/api/v1", api._call), ("/slave(1)/mesos.internal.RunTaskMessage", executor),
                                  ("/slave(1)/api/v1", api._call), ("/slave(1)/api/v1/x", api._call)):
                match = await app.router.resolve(make_mocked_request("POST", path, app=app))
                assert match.handler is handler, path
    asyncio.run(scenario())


def test_prune_images(agent_flags, tmp_path):
    """As Mesos's: an image a running container came from, or one excluded, stays; the others go,
    with the layers nothing uses any more."""
    from corral.provisioner.localimage import write_busybox_tarball
    write_busybox_tarball(str(tmp_path / "images"))
    busybox = {"type": "DOCKER", "docker": {"name": "busybox"}}

    async def scenario():
        async with InProcessAgent(agent_flags("--image_providers=docker",
                                              f"--docker_registry={tmp_path / 'images'}")) as a:
            provisioner = a.containerizer.sync.provisioner
            body = launch("img", "sleep 100")
            body["launch_container"]["container"] = {"type": "MESOS", "mesos": {"image": busybox}}
            assert (await a.call(body))[0] == 200
            assert (await a.call({"type": "PRUNE_IMAGES"}))[0] == 200
            assert len(provisioner.images()) == 1                     # its container runs
            by_id = {"container_id": {"value": "img"}}
            await a.call({"type": "KILL_CONTAINER", "kill_container": by_id})
            await a.call({"type": "WAIT_CONTAINER", "wait_container": by_id})
            await until(lambda: "img" not in a.agent.allocator.held)     # released: its rootfs is gone
            assert (await a.call({"type": "PRUNE_IMAGES", "prune_images": {"excluded_images": [busybox]}}))[0] == 200
            assert len(provisioner.images()) == 1                     # excluded
            assert (await a.call({"type": "PRUNE_IMAGES", "prune_images": {}}))[0] == 200
            assert provisioner.images() == [] and os.listdir(provisioner.store.path("layers")) == []
            for bad, says in [(["busybox"], "must be a JSON object"), ([{"type": "OCI"}], "DOCKER or APPC"),
                              ([{"type": "DOCKER", "docker": {}}], 'needs a "name"')]:
                status, text = await a.call({"type": "PRUNE_IMAGES", "prune_images": {"excluded_images": bad}})
                assert status == 400 and says in text, (bad, text)
    asyncio.run(scenario())


def test_get_containers_as_mesos(agent_flags):
    """GET_CONTAINERS lists the running containers, standalone all of them, with show_standalone;
    each with its ContainerStatus and ResourceStatistics (the memory cgroup's figures)."""
    async def scenario():
        async with InProcessAgent(agent_flags()) as a:
            assert (await a.call(launch("runs", "sleep 100")))[0] == 200
            assert (await a.call(launch("ends", "true")))[0] == 200
            await a.call({"type": "WAIT_CONTAINER", "wait_container": {"container_id": {"value": "ends"}}})

            _, reply = await a.call({"type": "GET_CONTAINERS"})
            assert check_reply(reply).get_containers.containers == []     # standalone: shown only when asked
            status, reply = await a.call({"type": "GET_CONTAINERS", "get_containers": {"show_standalone": True,
                                                                                        "show_nested": True}})
            [runs] = check_reply(reply).get_containers.containers       # an ended container is not listed
            assert status == 200 and runs.container_id.value == "runs" and runs.container_status.container_id.value == "runs"
            supervised = (await a.agent.containerizer.status("runs"))["pid"]
            assert runs.container_status.executor_pid == supervised and os.path.exists(f"/proc/{supervised}")
            stats = runs.resource_statistics
            assert stats.processes >= 1 and stats.mem_limit_bytes == 32 * 1024 * 1024    # Mesos's floor
            assert 0 < stats.mem_total_bytes < stats.mem_limit_bytes and stats.timestamp > 0
            assert not runs.HasField("framework_id") and not runs.HasField("executor_id")

            for body, says in [({"show_standalone": "yes"}, "must be true or false"),
                               ({"show_nested": 1}, "must be true or false"), ([], "must be a JSON object")]:
                status, text = await a.call({"type": "GET_CONTAINERS", "get_containers": body})
                assert status == 400 and says in text, (body, text)
            await a.call({"type": "KILL_CONTAINER", "kill_container": {"container_id": {"value": "runs"}}})
            await a.call({"type": "WAIT_CONTAINER", "wait_container": {"container_id": {"value": "runs"}}})
            _, reply = await a.call({"type": "GET_CONTAINERS", "get_containers": {"show_standalone": True}})
            assert check_reply(reply).get_containers.containers == []
            assert [c["container_id"]["value"] for c in (await a.state())["containers"]] == ["ends", "runs"]
    asyncio.run(scenario())


def test_wait_container_as_mesos(agent_flags, monkeypatch):
    """WAIT_CONTAINER's ends parse as agent.proto's WaitContainer: a wait status, a TaskState, a
    TaskStatus.Reason where the agent ended it. The KILL_CONTAINER comes right after the launch,
    before init is ready for it: init is held 0.3 s at its start (as on a loaded host; the launch
    server, forked from this process, runs the held one), and the SIGTERM must still end the task."""
    real_init = supervisor._init
    monkeypatch.setattr(supervisor, "_init", lambda *args: (time.sleep(0.3), real_init(*args)))

    async def scenario():
        async with InProcessAgent(agent_flags("--isolation=cgroups/mem")) as a:
            async def waited(container_id):
                _, reply = await a.call({"type": "WAIT_CONTAINER", "wait_container": {
                    "container_id": {"value": container_id}}})
                return check_reply(reply).wait_container
            assert (await a.call(launch("exits", "exit 3")))[0] == 200
            end = await waited("exits")
            assert os.WEXITSTATUS(end.exit_status) == 3 and end.state == check("WaitContainer", {
                "state": "TASK_FAILED"}).state
            assert (await a.call(launch("killed", "sleep 100")))[0] == 200
            await a.call({"type": "KILL_CONTAINER", "kill_container": {"container_id": {"value": "killed"},
                                                                       "signal": 15}})
            end = await asyncio.wait_for(waited("killed"), 30)     # a lost SIGTERM: sleep runs on
            assert os.WTERMSIG(end.exit_status) == 15
            body = launch("hungry", "head -c 200m /dev/zero | tail > /dev/null")    # tail holds it all
            body["launch_container"]["resources"] = [{"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}]
            assert (await a.call(body))[0] == 200
            end = await waited("hungry")
            assert end.HasField("reason") and end.reason in (
                check("WaitContainer", {"reason": "REASON_CONTAINER_LIMITATION_MEMORY"}).reason,
                check("WaitContainer", {"reason": "REASON_CONTAINER_LIMITATION"}).reason), end
    asyncio.run(scenario())
