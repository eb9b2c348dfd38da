"""The agent's HTTP API: Mesos's v1 operator calls as JSON on POST /api/v1; GET /health, /state,
/metrics/snapshot (Mesos's metric names) and /metrics (Prometheus text); the sandboxes' files
at GET /files/read and /files/browse (agent/sandboxes.py), as mesos-agent's Files process.

Paths are routed as libprocess routes them: the longest registered prefix serves (a POST to
/api/v1/anything is an operator call), and the agent's own endpoints (/api/v1, /health, /state)
answer under its process id as well (/slave(1)/api/v1, ...), as mesos-agent's do.

Only translation lives here: request JSON to `Agent` calls, answers and errors to HTTP; the
calls on the agent's state are in agent/queries.py, the request bodies' shapes in agent/shapes.py.
Bad input of any kind (JSON, call, content type, size, container id, resources) is a 4xx with a
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
from corral.provisioner.errors import DigestMismatch, ImageNotFound, InvalidImage, RegistryError
from corral.types import CorralError, InvalidInput, NoSuchContainer, Unavailable

from . import attach, metrics, queries, recordio, sandboxes
from .allocator import InsufficientResources
from .resources import Resources
from .sessions import SESSIONS
from .shapes import JsonObject, config_of, container_id_of, in_range, signal_of, sound_text

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
    from .sessions import Sessions
    app[SESSIONS] = Sessions(agent.flags)
    app.on_shutdown.append(lambda app: app[SESSIONS].stop())
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
    return sound_text(value, key)


def _query_count(query, key: str) -> int | None:
    """A query's offset or length: a count of bytes; -1 or absent is None (Mesos's web UI sends -1)."""
    value = query.get(key)
    if value is None or value == "-1":
        return None
    if not value.isascii() or not value.isdigit():
        raise InvalidInput(f"'{key}' must be a count of bytes (or -1), not {value!r}")
    return in_range(int(value), key)




async def _call(request):
    if request.content_type == recordio.CONTENT_TYPE:     # a streaming request: the one call that is one
        return await attach.attach_container_input(request, request.app[AGENT])
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
    body = JsonObject(_parse(raw))
    kind = body.get("type", str)
    if kind == "ATTACH_CONTAINER_INPUT":
        return web.Response(status=415, text=f"ATTACH_CONTAINER_INPUT is a stream: send {recordio.CONTENT_TYPE}\n")
    if kind in STREAMING:
        return await STREAMING[kind](request, request.app[AGENT], body.object(kind.lower()))
    handler = CALLS.get(kind)
    if handler is None:
        raise InvalidInput(f"unknown or unsupported call {kind!r} (known: {', '.join(sorted([*CALLS, *STREAMING]))})"
                           if kind else
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


async def launch_container(agent, call):
    container_id = container_id_of(call)
    config = config_of(call)
    request = Resources.from_json(call.data.get("resources") or [])     # Resources checks its JSON form
    if not await agent.launch(container_id, config, request):
        return web.Response(status=202)
    return web.Response(status=200)


async def wait_container(agent, call):
    end = await agent.wait(container_id_of(call))
    return {key: end.get(key) for key in ("exit_status", "state", "reason", "message")}


async def kill_container(agent, call):
    await agent.kill(container_id_of(call), signal_of(call))
    return web.Response(status=200)


async def remove_container(agent, call):
    await agent.remove(container_id_of(call))
    return web.Response(status=200)


# The v1 operator calls, by type: those on the agent's state (agent/queries.py) and those on containers.
CALLS = {
    "GET_HEALTH": queries.get_health, "GET_VERSION": queries.get_version, "GET_FLAGS": queries.get_flags,
    "GET_STATE": queries.get_state, "GET_METRICS": queries.get_metrics, "GET_AGENT": queries.get_agent,
    "GET_FRAMEWORKS": queries.get_frameworks, "GET_EXECUTORS": queries.get_executors,
    "GET_TASKS": queries.get_tasks, "GET_OPERATIONS": queries.get_operations,
    "GET_RESOURCE_PROVIDERS": queries.get_resource_providers, "GET_LOGGING_LEVEL": queries.get_logging_level,
    "SET_LOGGING_LEVEL": queries.set_logging_level, "LIST_FILES": queries.list_files,
    "READ_FILE": queries.read_file, "PRUNE_IMAGES": queries.prune_images,
    "GET_CONTAINERS": queries.get_containers, "LAUNCH_CONTAINER": launch_container,
    "WAIT_CONTAINER": wait_container, "KILL_CONTAINER": kill_container, "REMOVE_CONTAINER": remove_container,
}


async def launch_nested_container_session(request, agent, call):
    return await request.app[SESSIONS].launch(request, call)


async def wait_nested_container(request, agent, call):
    answer = await request.app[SESSIONS].wait(call)
    return web.json_response({"type": "WAIT_NESTED_CONTAINER", "wait_nested_container": answer})


# The calls handed the request itself, to answer as they go: streams (agent/attach.py, and the
# nested container sessions of agent/sessions.py) and the sessions' wait.
STREAMING = {"ATTACH_CONTAINER_OUTPUT": attach.attach_container_output,
             "LAUNCH_NESTED_CONTAINER_SESSION": launch_nested_container_session,
             "WAIT_NESTED_CONTAINER": wait_nested_container}
