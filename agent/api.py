"""The agent's HTTP API: Mesos's v1 operator calls as JSON on POST /api/v1; GET /health, /state,
/metrics/snapshot (Mesos's metric names) and /metrics (Prometheus text); the sandboxes' files
at GET /files/read and /files/browse (agent/sandboxes.py), as mesos-agent's Files process.

Paths are routed as libprocess routes them: the longest registered prefix serves (a POST to
/api/v1/anything is an operator call), and the agent's own endpoints (/api/v1, /health, /state)
answer under its process id as well (/slave(1)/api/v1, ...), as mesos-agent's do.

Only translation lives here: request JSON to `Agent` calls, answers and errors to HTTP. Bad
input of any kind (JSON, call, content type, size, container id, resources) is a 4xx with a
one-line message, never a 500.

    200 done   202 LAUNCH_CONTAINER of a known id   400 invalid or unsupported   401 no credentials
    404 unknown container or image   408 the body came too late   409 not enough free resources
    413 body too large   415 not JSON   503 unavailable for now (dockerd or a registry down)

A client that hangs up has its call dropped (aiohttp's handler cancellation): an open WAIT
holds nothing once its client has gone. What a call set going in the agent (a launch, a kill,
a removal) runs to its end all the same.

Slow or stuck clients hold nothing for long (--http_request_timeout, T): a connection that sends
no complete request headers within T of connecting or of its last response is closed (aiohttp's
keep-alive timer, which also covers the headers); a body that has not all arrived within T of
the headers is answered 408 and the connection closed; a response the client has not taken
within T closes the connection. Each connection is served on its own task, so the others never
wait on a slow one.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import socket

from aiohttp import web

import corral
from . import sandboxes
from corral.types import ContainerConfig, CorralError, InvalidInput, NoSuchContainer, Unavailable, parse_signal

from corral.provisioner.errors import DigestMismatch, ImageNotFound, InvalidImage, RegistryError

from . import metrics
from .allocator import InsufficientResources
from .resources import Resources
from . import verbosity

MAX_BODY = 1 << 20
SHUTDOWN_GRACE = 0.25   # seconds the calls under way get to answer when the agent stops (not a WAIT's end)
AGENT = web.AppKey("agent", object)
# Routes named so serve Mesos peers, not operators (the master's messages, agent/master.py): as
# in Mesos, they carry no HTTP credentials, and their handler checks who sent them.
PEER_ROUTE = "peer:"
PROCESS_ID = "/slave(1)"       # the agent's libprocess id: its endpoints answer under it too


def make_runner(agent) -> web.AppRunner:
    """The app as served: idle connections, and request headers, get --http_request_timeout (the
    keep-alive timer runs from the connection's start and from each response); so does the
    reading of what a client still sends after its answer (aiohttp's lingering close)."""
    timeout = agent.flags.http_request_timeout
    return web.AppRunner(make_app(agent), handle_signals=False, keepalive_timeout=timeout, lingering_time=timeout,
                         handler_cancellation=True, shutdown_timeout=SHUTDOWN_GRACE)


def make_app(agent) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=[_deliver, _errors, _authenticate])
    app[AGENT] = agent
    for prefix in ("", PROCESS_ID):         # the agent process's endpoints
        _route(app, "POST", prefix + "/api/v1", _call)
        _route(app, "GET", prefix + "/health", _health)
        _route(app, "GET", prefix + "/state", _state)
        _route(app, "GET", prefix + "/state.json", _state)
    _route(app, "GET", "/files/read", _files_read)      # the files process's
    _route(app, "GET", "/files/browse", _files_browse)
    _route(app, "GET", "/metrics/snapshot", _metrics_snapshot)
    app.router.add_get("/metrics", _metrics_prometheus)
    return app


def _route(app: web.Application, method: str, path: str, handler) -> None:  # method: GET or POST
    """`path` and every path below it, as libprocess serves the longest registered prefix: a
    route registered for a longer path (/api/v1/executor) still takes its own (aiohttp looks a
    path up from its longest prefix down)."""
    route = app.router.add_get if method == "GET" else app.router.add_post      # a GET answers HEAD too
    route(path + "{below:(?:/.*)?}", handler)


# -- middlewares -----------------------------------------------------------------------------------

# A missing image is the request's to fix (404, as a missing container); a registry that is down
# or unusable, or that sent a blob that is not what its digest says, may do better later (503).
_STATUS = ((NoSuchContainer, 404), (ImageNotFound, 404), (sandboxes.FileNotFound, 404), (InsufficientResources, 409), (InvalidInput, 400),
           (InvalidImage, 400), (Unavailable, 503), (RegistryError, 503), (DigestMismatch, 503))


@web.middleware
async def _deliver(request, handler):
    """Send the response here, within --http_request_timeout, rather than after the handler as
    aiohttp does with no limit: a client that never reads its answers would otherwise keep this
    connection's task waiting for room in the socket, and the answer in memory, for ever."""
    try:
        response = await handler(request)
    except web.HTTPException as e:      # aiohttp's own answers (404, 405, 413) are responses too
        await _send(request, e)
        raise
    await _send(request, response)
    return response


async def _send(request, response) -> None:
    try:
        async with asyncio.timeout(request.app[AGENT].flags.http_request_timeout):
            await response.prepare(request)
            await response.write_eof()
    except TimeoutError:
        if request.transport is not None:
            request.transport.abort()       # drops what is buffered; aiohttp then sees the connection gone


@web.middleware
async def _errors(request, handler):
    try:
        return await handler(request)
    except CorralError as e:
        status = next((code for kind, code in _STATUS if isinstance(e, kind)), 500)
        # A message may quote the request: never let what it quotes fail the answer.
        return web.Response(status=status, body=(str(e) + "\n").encode(errors="backslashreplace"),
                            content_type="text/plain", charset="utf-8")


@web.middleware
async def _authenticate(request, handler):
    credentials = request.app[AGENT].flags.credentials
    if (credentials and not (request.match_info.route.name or "").startswith(PEER_ROUTE)
            and not _authorized(request.headers.get("Authorization", ""), credentials)):
        return web.Response(status=401, text="authentication required\n",
                            headers={"WWW-Authenticate": 'Basic realm="corral"'})
    return await handler(request)


def _authorized(header: str, credentials: dict[str, str]) -> bool:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        principal, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
    except ValueError:          # not base64 (binascii.Error), not ASCII, or not UTF-8 once decoded
        return False
    expected = credentials.get(principal)
    return expected is not None and hmac.compare_digest(expected.encode(), secret.encode())


# -- the calls ------------------------------------------------------------------------------------

async def _health(request):
    if not await request.app[AGENT].containerizer.healthy():
        return web.Response(status=503, text="unhealthy: the containerizer cannot launch\n")
    return web.Response(text="OK\n")


async def _state(request):
    agent = request.app[AGENT]
    return web.json_response({
        "id": agent.agent_id, "version": corral.__version__, "hostname": socket.gethostname(),
        "start_time": agent.started, "flags": {f["name"]: f["value"] for f in agent.flags.to_list()},
        "resources": _summary(agent.total), "used_resources": _summary(agent.total - agent.allocator.free()),
        "containers": await _containers(agent),
    })


async def _containers(agent) -> list[dict]:
    """corral's own record of every container it knows, ended ones too until they are removed:
    what each was given (with the units of whole-unit resources it holds) and its status stream (STARTING, RUNNING, its end). Mesos's GET_CONTAINERS
    has no room for these; /state, an endpoint of mesos-agent's own JSON, has."""
    return [{"container_id": {"value": found["container_id"]}, "resources": found["resources"],
             **({"units": found["units"]} if found["units"] else {}),   # which devices (gpus:1 -> {"gpus": ["0"]})
             "statuses": found["statuses"]} for found in await agent.containers()]


def _summary(resources: Resources) -> dict:
    """Mesos's /state form: {"cpus": 2.0, "ports": "[31000-32000]"}, roles summed."""
    return {name: value if isinstance(value, float) else _text(value)
            for name in sorted(resources.names()) for value in [resources.get(name)]}


def _text(value) -> str:
    return "{" + ",".join(sorted(value)) + "}" if isinstance(value, frozenset) else str(value)


async def _metrics_snapshot(request):
    return web.json_response(metrics.snapshot(request.app[AGENT]))


async def _metrics_prometheus(request):
    return web.Response(body=metrics.prometheus(metrics.snapshot(request.app[AGENT])).encode(),
                        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


async def _files_read(request):
    """Mesos's /files/read: {"data": text, "offset": N}; without an offset (or -1), the file's
    size as "offset" and no data, as Mesos's web UI first asks. Bytes that are not UTF-8 are
    replaced (U+FFFD): this endpoint is for a reader of logs; READ_FILE gives the bytes."""
    query = request.query
    path = _query_text(query, "path")
    offset = _query_count(query, "offset")
    length = _query_count(query, "length")
    size, data = await asyncio.to_thread(sandboxes.read, sandboxes.attached(request.app[AGENT]), path,
                                         0 if offset is None else offset, 0 if offset is None else length)
    return web.json_response({"data": data.decode(errors="replace"), "offset": size if offset is None else offset})


async def _files_browse(request):
    """Mesos's /files/browse: the directory's entries, each {"path", "nlink", "size", "mtime"
    (seconds), "mode" ("drwxr-xr-x"), "uid", "gid"}."""
    path = _query_text(request.query, "path")
    infos = await asyncio.to_thread(sandboxes.browse, sandboxes.attached(request.app[AGENT]), path)
    return web.json_response([sandboxes.browse_entry(info) for info in infos])


def _query_text(query, key: str) -> str:
    value = query.get(key, "")
    if not value:
        raise InvalidInput(f"expecting '{key}=value' in the query")
    return _sound_text(value, key)


def _query_count(query, key: str) -> int | None:
    """A query's offset or length: a count of bytes; -1 or absent is None (Mesos's web UI sends -1)."""
    value = query.get(key)
    if value is None or value == "-1":
        return None
    if not value.isascii() or not value.isdigit():
        raise InvalidInput(f"'{key}' must be a count of bytes (or -1), not {value!r}")
    return _in_range(int(value), key)


def _in_range(value: int, where: str) -> int:
    if value > MAX_OFFSET:
        raise InvalidInput(f'"{where}" is out of range: {value} is past the largest file offset ({MAX_OFFSET})')
    return value


MAX_OFFSET = (1 << 63) - 1      # off_t's


async def _call(request):
    if request.content_type != "application/json":
        return web.Response(status=415, text=f"send application/json, not {request.content_type}\n")
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(MAX_BODY, request.content_length)     # without reading it
    timeout = request.app[AGENT].flags.http_request_timeout
    try:
        async with asyncio.timeout(timeout):
            raw = await request.read()  # past client_max_size, aiohttp answers 413 itself
    except TimeoutError:
        response = web.Response(status=408, text=f"the request's body did not arrive within {timeout:g}s\n")
        response.force_close()
        return response
    body = _Object(_parse(raw))
    kind = body.get("type", str)
    handler = CALLS.get(kind)
    if handler is None:
        raise InvalidInput(f"unknown or unsupported call {kind!r} (known: {', '.join(sorted(CALLS))})" if kind else
                           'the body must be a JSON object with a "type", such as {"type": "GET_HEALTH"}')
    answer = await handler(request.app[AGENT], body.object(kind.lower()))
    if isinstance(answer, web.Response):
        return answer
    return web.json_response({"type": kind, kind.lower(): answer} if answer is not None else {})


def _parse(raw: bytes):
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidInput(f"the body is not valid JSON: {e}") from None
    except RecursionError:
        raise InvalidInput("the body is not valid JSON: nested too deeply") from None


async def get_health(agent, _):
    return {"healthy": await agent.containerizer.healthy()}


async def get_version(agent, _):
    return {"version_info": {"version": corral.__version__, "build_user": "corral"}}


async def get_flags(agent, _):
    return {"flags": agent.flags.to_list()}


async def get_containers(agent, call):
    """Mesos's GetContainers: the containers running now (ended ones are not, as in mesos-agent),
    each with its ContainerStatus and ResourceStatistics, which are left out while they cannot
    be had (a container still launching). A framework's executor's container (a task's, with
    --master) is listed with its framework and executor; the standalone ones (LAUNCH_CONTAINER's)
    only with "show_standalone": true, as mesos-agent's. None is nested."""
    show_standalone = call.get("show_standalone", bool, False)
    call.get("show_nested", bool, False)        # checked; there are no nested containers to show
    executors = _executor_containers(agent)
    running = [cid for cid, end in sorted(agent.ends.items())
               if not end.done() and (cid in executors or show_standalone)]
    return {"containers": list(await asyncio.gather(*(_container(agent, cid, executors.get(cid)) for cid in running)))}


def _executor_containers(agent) -> dict[str, dict]:
    """Container id -> the framework and executor fields of GetContainers.Container, for the
    containers of frameworks' executors (a task's, under its command executor; a custom executor's)."""
    if agent.tasks is None:
        return {}
    found = {}
    for run in agent.tasks.runs.values():
        executor = run.executor
        container_id = executor.container_id if executor is not None else run.container_id
        found[container_id] = {"framework_id": {"value": run.framework_id},
                               "executor_id": {"value": _executor_id(run)},
                               "executor_name": executor.info.name if executor is not None else
                               f"Command Executor (Task: {run.task_id})"}
    return found


async def _container(agent, container_id: str, executor: dict | None) -> dict:
    container = {**(executor or {}), "container_id": {"value": container_id}}
    if container_id in agent.launches:
        return container                # its runtime files are being written
    try:
        status = await agent.containerizer.status(container_id)
        container["container_status"] = {"container_id": {"value": container_id}}
        if isinstance(status.get("pid"), int):
            container["container_status"]["executor_pid"] = status["pid"]
        container["resource_statistics"] = await agent.containerizer.usage(container_id)
    except (CorralError, OSError):
        # Ended meanwhile: its runtime files, or its cgroups (ENODEV once removed), went while
        # they were read in the containerizer's thread. Listed without them, as Mesos does.
        pass
    return container


async def get_state(agent, _):
    return {"get_tasks": await get_tasks(agent, None), "get_executors": await get_executors(agent, None),
            "get_frameworks": await get_frameworks(agent, None)}


async def get_agent(agent, _):
    return {"agent_info": {"id": {"value": agent.agent_id}, "hostname": socket.gethostname(),
                           "port": agent.flags.port, "resources": agent.total.to_json()}}


# Frameworks, their executors and tasks come with a master (--master: agent/tasks.py); without
# one, corral's containers are all standalone, and these lists are empty. A task whose end the
# master has acknowledged is forgotten at once (corral keeps no completed ones).
async def get_frameworks(agent, _):
    tasks = agent.tasks
    frameworks = [] if tasks is None else [{"framework_info": _framework_info(info)}
                                           for _, info in sorted(tasks.frameworks.items())]
    return {"frameworks": frameworks, "completed_frameworks": []}


async def get_executors(agent, _):
    """The custom executors running (a command executor is the agent's own: none is listed for
    it, as in the master's view of it)."""
    executors = [] if agent.tasks is None else [
        {"executor_info": {"executor_id": {"value": executor.id}, "framework_id": {"value": executor.framework_id},
                           **({"name": executor.info.name} if executor.info.name else {})}}
        for executor in agent.tasks.executors.running.values()]
    return {"executors": executors, "completed_executors": []}


async def get_tasks(agent, _):
    launched, terminated = [], []
    for run in [] if agent.tasks is None else agent.tasks.runs.values():
        if run.latest is None:
            continue                            # not launched yet: no state to tell
        (terminated if run.latest in TERMINAL_TASK_STATES else launched).append(_task(agent, run))
    return {"pending_tasks": [], "queued_tasks": [], "launched_tasks": launched, "terminated_tasks": terminated,
            "completed_tasks": []}


TERMINAL_TASK_STATES = frozenset({"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_LOST",
                                  "TASK_DROPPED", "TASK_GONE", "TASK_GONE_BY_OPERATOR"})


def _framework_info(info) -> dict:
    """Mesos's FrameworkInfo, the fields a framework gave that an operator reads."""
    out = {"user": info.user, "name": info.name, "id": {"value": info.id.value}, "checkpoint": info.checkpoint,
           "failover_timeout": info.failover_timeout, "roles": list(info.roles)}
    for field in ("hostname", "principal"):
        if getattr(info, field):
            out[field] = getattr(info, field)
    return out


def _task(agent, run) -> dict:
    """Mesos's Task for a framework's task: its id, name, state and resources, the executor that
    runs it (a command executor has the task's id) and the agent's id from the master."""
    from google.protobuf.json_format import MessageToDict
    return {"name": run.task.name, "task_id": {"value": run.task_id}, "framework_id": {"value": run.framework_id},
            "executor_id": {"value": _executor_id(run)}, "agent_id": {"value": agent.tasks.slave_id or ""},
            "state": run.latest, "resources": [MessageToDict(r, preserving_proto_field_name=True)
                                               for r in run.task.resources]}


def _executor_id(run) -> str:
    return run.executor.id if run.executor is not None else run.task_id


async def get_resource_providers(agent, _):
    return {"resource_providers": []}       # no resource providers (CSI volumes) in corral


async def get_operations(agent, _):
    return {"operations": []}       # operations on resources (reservations, volumes): none in corral


async def get_logging_level(agent, _):
    return {"level": verbosity.VERBOSITY.level}


async def set_logging_level(agent, call):
    """Mesos's SetLoggingLevel: {"level": N, "duration": {"nanoseconds": N}}, both required."""
    level = _required(call, "level", int)
    if not 0 <= level < 1 << 32:
        raise InvalidInput(f'"{call.path("level")}" is out of range: {level} is not a uint32')
    _required(call, "duration", dict)
    nanoseconds = _required(call.object("duration"), "nanoseconds", int)
    if not 0 <= nanoseconds < 1 << 63:
        raise InvalidInput(f'"{call.path("duration")}.nanoseconds" is out of range: {nanoseconds}')
    verbosity.VERBOSITY.set(level, nanoseconds / 1e9)
    return web.Response(status=200)


async def list_files(agent, call):
    path = _required(call, "path", str)
    return {"file_infos": await asyncio.to_thread(sandboxes.browse, sandboxes.attached(agent), path)}


async def read_file(agent, call):
    """Mesos's ReadFile: the file's size and up to 16 pages of it from `offset` ("data", base64
    as protobuf's JSON has bytes); from past the end, none."""
    path = _required(call, "path", str)
    offset = _in_range(_uint64(call, "offset", required=True), call.path("offset"))
    length = _uint64(call, "length")
    size, data = await asyncio.to_thread(sandboxes.read, sandboxes.attached(agent), path, offset, length)
    return {"size": size, "data": base64.b64encode(data).decode()}


async def prune_images(agent, call):
    """Mesos's PruneImages: the stored images go but those `excluded_images` names and those that
    containers still running were launched from; then the layers that nothing uses any more."""
    keep = [_image(_Object(image, f"{call.path('excluded_images')}[{index}]"))
            for index, image in enumerate(call.get("excluded_images", list, []))]
    for container_id, record in agent.records.items():
        image = (record.get("config") or {}).get("image")
        if image and (container_id in agent.watchers or container_id in agent.launches):
            keep.append(image)
    provisioner = _provisioner(agent.containerizer)
    if provisioner is not None:
        await asyncio.to_thread(_prune, provisioner, keep)
    return web.Response(status=200)


def _prune(provisioner, keep: list[dict]) -> None:
    kept = {provisioner.resolve(image["name"], image["type"]) for image in keep}
    for record in provisioner.images():
        if record["reference"] not in kept:
            try:
                provisioner.remove(record["reference"])
            except ImageNotFound:
                pass                    # removed meanwhile (a prune of the CLI's, say)
    provisioner.prune()


def _provisioner(containerizer):
    """The Mesos containerizer's image provisioner, if this agent has one."""
    for each in getattr(containerizer, "containerizers", [containerizer]):
        provisioner = getattr(getattr(each, "sync", None), "provisioner", None)
        if provisioner is not None:
            return provisioner
    return None


async def get_metrics(agent, _):
    return {"metrics": [{"name": name, "value": value} for name, value in sorted(metrics.snapshot(agent).items())]}


async def launch_container(agent, call):
    container_id = _container_id(call)
    config = _config(call)
    request = Resources.from_json(call.data.get("resources") or [])     # Resources checks its JSON form
    if not await agent.launch(container_id, config, request):
        return web.Response(status=202)
    return web.Response(status=200)


async def wait_container(agent, call):
    end = await agent.wait(_container_id(call))
    return {key: end.get(key) for key in ("exit_status", "state", "reason", "message")}


async def kill_container(agent, call):
    await agent.kill(_container_id(call), _signal(call))
    return web.Response(status=200)


async def remove_container(agent, call):
    await agent.remove(_container_id(call))
    return web.Response(status=200)


CALLS = {
    "GET_HEALTH": get_health, "GET_VERSION": get_version, "GET_FLAGS": get_flags, "GET_STATE": get_state,
    "GET_METRICS": get_metrics, "GET_AGENT": get_agent, "GET_FRAMEWORKS": get_frameworks,
    "GET_EXECUTORS": get_executors, "GET_TASKS": get_tasks, "GET_OPERATIONS": get_operations,
    "GET_RESOURCE_PROVIDERS": get_resource_providers,
    "GET_LOGGING_LEVEL": get_logging_level, "SET_LOGGING_LEVEL": set_logging_level,
    "LIST_FILES": list_files, "READ_FILE": read_file, "PRUNE_IMAGES": prune_images,
    "GET_CONTAINERS": get_containers, "LAUNCH_CONTAINER": launch_container, "WAIT_CONTAINER": wait_container,
    "KILL_CONTAINER": kill_container, "REMOVE_CONTAINER": remove_container,
}


# -- request shapes ----------------------------------------------------------------------------
# One place checks what each call's body holds: every field the agent reads is read through an
# `_Object`, which answers InvalidInput naming the field and the type it must have. Nothing of a
# body reaches the agent's core, its checkpoint or its launch server unchecked.

_JSON_TYPES = {dict: "a JSON object", list: "a list", str: "a string", int: "an integer", float: "a number",
               bool: "true or false"}


class _Object:
    """A JSON object of a request, at `where` ("launch_container.command")."""

    def __init__(self, data, where: str = ""):
        if not isinstance(data, dict):
            raise InvalidInput(f'{_quoted(where)} must be a JSON object, not {_json_type(data)}')
        self.data, self.where = data, where

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def get(self, key: str, kind: type, default=None):
        """The field, which must be of `kind` (a str also valid Unicode) when present and not null."""
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise InvalidInput(f'"{self.path(key)}" must be {_JSON_TYPES[kind]}, not {_json_type(value)}')
        if kind is str:
            _sound_text(value, self.path(key))
        return value

    def object(self, key: str) -> "_Object":
        """The field as an _Object ({} when absent)."""
        return _Object(self.get(key, dict, {}), self.path(key))

    def strings(self, key: str) -> list[str]:
        values = self.get(key, list, [])
        for index, value in enumerate(values):
            if not isinstance(value, str):
                raise InvalidInput(f'"{self.path(key)}" must be a list of strings ({index}: {_json_type(value)})')
            _sound_text(value, f"{self.path(key)}[{index}]")
        return values


def _quoted(where: str) -> str:
    return f'"{where}"' if where else "the body"


def _json_type(value) -> str:
    return "null" if value is None else next(
        (name for kind, name in _JSON_TYPES.items() if type(value) is kind), type(value).__name__)


def _sound_text(value: str, where: str) -> str:
    """A string fit for a path, an argv or an answer: JSON's \\ud800 and \\u0000 escapes make
    strings that none of these can hold."""
    try:
        value.encode()
    except UnicodeEncodeError:
        raise InvalidInput(f'"{where}" is not valid Unicode (a lone surrogate)') from None
    if "\0" in value:
        raise InvalidInput(f'"{where}" holds a NUL character')
    return value


def _required(call: _Object, key: str, kind: type):
    value = call.get(key, kind)
    if value is None:
        raise InvalidInput(f'{_quoted(call.where)} needs "{key}"')
    return value


def _uint64(call: _Object, key: str, required: bool = False) -> int | None:
    """A uint64 field: a number, or a string of digits as protobuf's JSON writes 64-bit integers."""
    value = call.data.get(key)
    if value is None:
        if required:
            raise InvalidInput(f'{_quoted(call.where)} needs "{key}"')
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 64:
        raise InvalidInput(f'"{call.path(key)}" must be an integer from 0 to 2^64-1, not {value!r}'[:300])
    return value


def _container_id(call: _Object) -> str:
    value = call.object("container_id").get("value", str)
    if value is None:
        raise InvalidInput(f'{_quoted(call.where)} needs "container_id": {{"value": "..."}}')
    return value


def _signal(call: _Object) -> int:
    value = call.data.get("signal", "SIGKILL")
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise InvalidInput(f'"{call.path("signal")}" must be a name or a number, not {_json_type(value)}')
    return parse_signal(_sound_text(value, call.path("signal")) if isinstance(value, str) else value)


def container_config(call: dict, where: str = "") -> ContainerConfig:
    """A ContainerConfig from a JSON object holding Mesos's "command" (CommandInfo) and
    "container" (ContainerInfo), checked as LAUNCH_CONTAINER's are: for a framework's task
    (agent/tasks.py) too. InvalidInput names what is wrong."""
    return _config(_Object(call, where))


def _config(call: _Object) -> ContainerConfig:
    """Mesos's CommandInfo and ContainerInfo, the parts corral honours."""
    if "command" not in call.data:
        raise InvalidInput(f'{_quoted(call.where)} needs "command": {{"value": "..."}}')
    command = call.object("command")
    value, arguments = command.get("value", str, ""), command.strings("arguments")
    if command.get("shell", bool, True):
        if not value:
            raise InvalidInput('a shell command needs "command.value"')
        argv = ["/bin/sh", "-c", value]
    else:
        argv = [value or arguments[0], *arguments[1:]] if (value or arguments) else []
    environment = command.object("environment")
    variables = [_Object(v, f"{environment.path('variables')}[{i}]")
                 for i, v in enumerate(environment.get("variables", list, []))]
    env = {}
    for variable in variables:
        name = variable.get("name", str)
        if name is None:
            raise InvalidInput(f'"{variable.where}" needs a "name"')
        env[name] = variable.get("value", str, "")
    container = call.object("container")
    kind = container.get("type", str, "MESOS")
    if kind == "DOCKER":
        image, network = _docker(container.object("docker"))
    elif kind == "MESOS":
        image, network = _mesos_image(container.object("mesos")), None
    else:
        raise InvalidInput(f'"container.type" must be MESOS or DOCKER, not {kind!r}')
    hostname = container.get("hostname", str)
    if hostname is not None and len(hostname.encode()) > HOST_NAME_MAX:
        raise InvalidInput(f'"{container.path("hostname")}" is longer than {HOST_NAME_MAX} bytes')
    return ContainerConfig(
        argv=argv, env=env, user=command.get("user", str), hostname=hostname,
        containerizer="docker" if kind == "DOCKER" else None, image=image, network=network,
        **_linux_info(container.object("linux_info")), rlimits=_rlimit_info(container.object("rlimit_info")))


def _linux_info(info: _Object) -> dict:
    """ContainerInfo.linux_info: capabilities (CapabilityInfo) and seccomp (SeccompInfo)."""
    from corral.isolators.capabilities import names
    config = {}
    for field in ("effective_capabilities", "bounding_capabilities"):
        if info.data.get(field) is not None:
            listed = info.object(field).strings("capabilities")
            config[field] = sorted(names(listed, f'"{info.path(field)}.capabilities"'))
    if info.data.get("seccomp") is not None:
        seccomp = info.object("seccomp")
        name = seccomp.get("profile_name", str)
        if seccomp.get("unconfined", bool) is True:
            config["seccomp_profile"] = "unconfined"
        elif name and "/" not in name and name not in (".", ".."):
            config["seccomp_profile"] = name          # in the agent's --seccomp_config_dir
        else:
            raise InvalidInput(f'"{seccomp.where}" needs "profile_name" (a name in the agent\'s '
                               '--seccomp_config_dir) or "unconfined": true')
    return config


def _rlimit_info(info: _Object) -> list:
    """ContainerInfo.rlimit_info: {"rlimits": [{"type": "RLMT_NOFILE", "soft": N, "hard": N}]}."""
    if not info.data:
        return []
    from corral.isolators.rlimits import parse_rlimits
    rlimits = info.get("rlimits", list, [])
    parse_rlimits(rlimits)
    return rlimits


HOST_NAME_MAX = 64      # Linux's: sethostname refuses a longer name (the task would fail at its start)


def _mesos_image(mesos: _Object) -> dict | None:
    """ContainerInfo.mesos.image: an image the Mesos containerizer provisions."""
    if mesos.data.get("image") is None:
        return None
    return _image(mesos.object("image"))


def _image(image: _Object) -> dict:
    """Mesos's Image: {"type": "DOCKER", "docker": {"name": "busybox"}} (or APPC, "appc")."""
    kind = image.get("type", str)
    if kind not in ("DOCKER", "APPC"):
        raise InvalidInput(f'"{image.where}" needs a type, DOCKER or APPC')
    name = image.object(kind.lower()).get("name", str)
    if not name:
        raise InvalidInput(f'"{image.path(kind.lower())}" needs a "name", such as "busybox"')
    return {"type": kind, "name": name}


# Mesos's DockerInfo.network: the host's network (the default: PORT0.. are host ports) or none.
# BRIDGE and USER would need port mappings within the ports given: not supported.
_DOCKER_NETWORKS = {"HOST": None, "NONE": "none"}


def _docker(docker: _Object) -> tuple[dict, str | None]:
    """ContainerInfo.docker: the image and network of a container for the docker containerizer."""
    image = docker.get("image", str)
    if not image:
        raise InvalidInput('a DOCKER container needs "container.docker.image", such as {"image": "busybox"}')
    network = docker.get("network", str, "HOST")
    if network not in _DOCKER_NETWORKS:
        raise InvalidInput(f'"container.docker.network" {network!r} is not supported: HOST (the default) or NONE')
    return {"type": "DOCKER", "name": image}, _DOCKER_NETWORKS[network]
