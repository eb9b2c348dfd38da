"""The agent's HTTP API: Mesos's v1 operator calls as JSON on POST /api/v1; GET /health, /state,
/metrics/snapshot (Mesos's metric names) and /metrics (Prometheus text).

Only translation lives here: request JSON to `Agent` calls, answers and errors to HTTP. Bad
input of any kind (JSON, call, content type, size, container id, resources) is a 4xx with a
one-line message, never a 500.

    200 done   202 LAUNCH_CONTAINER of a known id   400 invalid or unsupported   401 no credentials
    404 unknown container   408 the body came too late   409 not enough free resources
    413 body too large   415 not JSON

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
import binascii
import hmac
import json
import socket

from aiohttp import web

import corral
from corral.types import ContainerConfig, CorralError, InvalidInput, NoSuchContainer, Unavailable, parse_signal

from . import metrics
from .allocator import InsufficientResources
from .resources import Resources

MAX_BODY = 1 << 20
AGENT = web.AppKey("agent", object)


def make_runner(agent) -> web.AppRunner:
    """The app as served: idle connections, and request headers, get --http_request_timeout (the
    keep-alive timer runs from the connection's start and from each response); so does the
    reading of what a client still sends after its answer (aiohttp's lingering close)."""
    timeout = agent.flags.http_request_timeout
    return web.AppRunner(make_app(agent), handle_signals=False, keepalive_timeout=timeout, lingering_time=timeout)


def make_app(agent) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=[_deliver, _errors, _authenticate])
    app[AGENT] = agent
    app.router.add_post("/api/v1", _call)
    app.router.add_get("/health", _health)
    app.router.add_get("/state", _state)
    app.router.add_get("/metrics/snapshot", _metrics_snapshot)
    app.router.add_get("/metrics", _metrics_prometheus)
    return app


# -- middlewares -----------------------------------------------------------------------------------

_STATUS = ((NoSuchContainer, 404), (InsufficientResources, 409), (InvalidInput, 400), (Unavailable, 503))


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
        return web.Response(status=status, text=str(e) + "\n")


@web.middleware
async def _authenticate(request, handler):
    credentials = request.app[AGENT].flags.credentials
    if credentials and not _authorized(request.headers.get("Authorization", ""), credentials):
        return web.Response(status=401, text="authentication required\n",
                            headers={"WWW-Authenticate": 'Basic realm="corral"'})
    return await handler(request)


def _authorized(header: str, credentials: dict[str, str]) -> bool:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        principal, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    expected = credentials.get(principal)
    return expected is not None and hmac.compare_digest(expected.encode(), secret.encode())


# -- the calls ------------------------------------------------------------------------------------

async def _health(request):
    return web.Response(text="OK\n")


async def _state(request):
    agent = request.app[AGENT]
    return web.json_response({
        "id": agent.agent_id, "version": corral.__version__, "hostname": socket.gethostname(),
        "start_time": agent.started, "flags": {f["name"]: f["value"] for f in agent.flags.to_list()},
        "resources": _summary(agent.total), "used_resources": _summary(agent.total - agent.allocator.free()),
        "containers": (await get_containers(agent, None))["containers"],
    })


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
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidInput(f"the body is not valid JSON: {e}") from None
    if not isinstance(body, dict) or not isinstance(body.get("type"), str):
        raise InvalidInput('the body must be a JSON object with a "type", such as {"type": "GET_HEALTH"}')
    handler = CALLS.get(body["type"])
    if handler is None:
        raise InvalidInput(f"unknown or unsupported call {body['type']!r} (known: {', '.join(sorted(CALLS))})")
    answer = await handler(request.app[AGENT], body.get(body["type"].lower(), {}))
    if isinstance(answer, web.Response):
        return answer
    return web.json_response({"type": body["type"], body["type"].lower(): answer} if answer is not None else {})


async def get_health(agent, _):
    return {"healthy": True}


async def get_version(agent, _):
    return {"version_info": {"version": corral.__version__, "build_user": "corral"}}


async def get_flags(agent, _):
    return {"flags": agent.flags.to_list()}


async def get_containers(agent, _):
    containers = []
    for found in await agent.containers():
        statuses = found["statuses"]
        containers.append({
            "container_id": {"value": found["container_id"]},
            "container_status": {"state": statuses[-1]["state"] if statuses else None},
            "resources": found["resources"],
            "statuses": statuses,
        })
    return {"containers": containers}


async def get_state(agent, _):
    return {"get_agent": {"agent_info": {"id": {"value": agent.agent_id}, "hostname": socket.gethostname(),
                                         "port": agent.flags.port, "resources": agent.total.to_json()}},
            "get_containers": await get_containers(agent, None)}


async def get_metrics(agent, _):
    return {"metrics": [{"name": name, "value": value} for name, value in sorted(metrics.snapshot(agent).items())]}


async def launch_container(agent, call):
    container_id = _container_id(call)
    config = _config(call)
    request = Resources.from_json(call.get("resources") or [])
    if not await agent.launch(container_id, config, request):
        return web.Response(status=202)
    return web.Response(status=200)


async def wait_container(agent, call):
    end = await agent.wait(_container_id(call))
    return {key: end.get(key) for key in ("exit_status", "state", "reason", "message")}


async def kill_container(agent, call):
    sig = call.get("signal", "SIGKILL")
    await agent.kill(_container_id(call), parse_signal(sig) if isinstance(sig, (str, int)) else _bad_signal(sig))
    return web.Response(status=200)


async def remove_container(agent, call):
    await agent.remove(_container_id(call))
    return web.Response(status=200)


CALLS = {
    "GET_HEALTH": get_health, "GET_VERSION": get_version, "GET_FLAGS": get_flags, "GET_STATE": get_state,
    "GET_METRICS": get_metrics,
    "GET_CONTAINERS": get_containers, "LAUNCH_CONTAINER": launch_container, "WAIT_CONTAINER": wait_container,
    "KILL_CONTAINER": kill_container, "REMOVE_CONTAINER": remove_container,
}


# -- request shapes ----------------------------------------------------------------------------

def _bad_signal(value):
    raise InvalidInput(f"invalid signal {value!r}")


def _container_id(call) -> str:
    container_id = call.get("container_id") if isinstance(call, dict) else None
    value = container_id.get("value") if isinstance(container_id, dict) else None
    if not isinstance(value, str):
        raise InvalidInput('the call needs "container_id": {"value": "..."}')
    return value


def _config(call: dict) -> ContainerConfig:
    """Mesos's CommandInfo and ContainerInfo, the parts corral honours."""
    command = call.get("command")
    if not isinstance(command, dict) or not isinstance(command.get("value", ""), str):
        raise InvalidInput('LAUNCH_CONTAINER needs "command": {"value": "..."}')
    value, arguments = command.get("value", ""), command.get("arguments", [])
    if not isinstance(arguments, list) or not all(isinstance(a, str) for a in arguments):
        raise InvalidInput('"command.arguments" must be a list of strings')
    if command.get("shell", True):
        if not value:
            raise InvalidInput('a shell command needs "command.value"')
        argv = ["/bin/sh", "-c", value]
    else:
        argv = [value or arguments[0], *arguments[1:]] if (value or arguments) else []
    environment = command.get("environment") or {}
    variables = environment.get("variables", []) if isinstance(environment, dict) else None
    if not isinstance(variables, list) or not all(
            isinstance(v, dict) and isinstance(v.get("name"), str) and isinstance(v.get("value", ""), str)
            for v in variables):
        raise InvalidInput('"command.environment.variables" must be [{"name": ..., "value": ...}, ...]')
    container = call.get("container") or {}
    if not isinstance(container, dict):
        raise InvalidInput('"container" must be a ContainerInfo object')
    kind = container.get("type", "MESOS")
    if kind == "DOCKER":
        image, network = _docker(container.get("docker"))
    elif kind == "MESOS":
        image, network = _mesos_image(container.get("mesos")), None
    else:
        raise InvalidInput(f'"container.type" must be MESOS or DOCKER, not {kind!r}')
    hostname = container.get("hostname")
    return ContainerConfig(
        argv=argv, env={v["name"]: v.get("value", "") for v in variables},
        user=command.get("user") if isinstance(command.get("user"), str) else None,
        hostname=hostname if isinstance(hostname, str) else None,
        containerizer="docker" if kind == "DOCKER" else None, image=image, network=network,
        **_linux_info(container.get("linux_info")), rlimits=_rlimit_info(container.get("rlimit_info")))


def _linux_info(info) -> dict:
    """ContainerInfo.linux_info: capabilities (CapabilityInfo) and seccomp (SeccompInfo)."""
    if info is None:
        return {}
    if not isinstance(info, dict):
        raise InvalidInput('"container.linux_info" must be a LinuxInfo object')
    from isolators.capabilities import names
    config = {}
    for field in ("effective_capabilities", "bounding_capabilities"):
        value = info.get(field)
        if value is not None:
            listed = value.get("capabilities", []) if isinstance(value, dict) else None
            config[field] = sorted(names(listed, f'"container.linux_info.{field}.capabilities"'))
    seccomp = info.get("seccomp")
    if seccomp is not None:
        if not isinstance(seccomp, dict):
            raise InvalidInput('"container.linux_info.seccomp" must be {"profile_name": ...} or {"unconfined": true}')
        name = seccomp.get("profile_name")
        if seccomp.get("unconfined") is True:
            config["seccomp_profile"] = "unconfined"
        elif isinstance(name, str) and name and "/" not in name and name not in (".", ".."):
            config["seccomp_profile"] = name          # in the agent's --seccomp_config_dir
        else:
            raise InvalidInput('"container.linux_info.seccomp" needs "profile_name" (a name in the agent\'s '
                               '--seccomp_config_dir) or "unconfined": true')
    return config


def _rlimit_info(info) -> list:
    """ContainerInfo.rlimit_info: {"rlimits": [{"type": "RLMT_NOFILE", "soft": N, "hard": N}]}."""
    if info is None:
        return []
    from isolators.rlimits import parse_rlimits
    rlimits = info.get("rlimits") if isinstance(info, dict) else None
    parse_rlimits(rlimits)
    return rlimits


def _mesos_image(mesos) -> dict | None:
    """ContainerInfo.mesos.image: an image the Mesos containerizer provisions."""
    image = mesos.get("image") if isinstance(mesos, dict) else None
    if image is None:
        return None
    if not isinstance(image, dict) or image.get("type") not in ("DOCKER", "APPC"):
        raise InvalidInput('"container.mesos.image" needs a type, DOCKER or APPC')
    details = image.get(image["type"].lower()) or {}
    return {"type": image["type"], "name": details.get("name") if isinstance(details, dict) else None}


# Mesos's DockerInfo.network: the host's network (the default: PORT0.. are host ports) or none.
# BRIDGE and USER would need port mappings within the ports given: not supported.
_DOCKER_NETWORKS = {"HOST": None, "NONE": "none"}


def _docker(docker) -> tuple[dict, str | None]:
    """ContainerInfo.docker: the image and network of a container for the docker containerizer."""
    image = docker.get("image") if isinstance(docker, dict) else None
    if not isinstance(image, str) or not image:
        raise InvalidInput('a DOCKER container needs "container.docker.image", such as {"image": "busybox"}')
    network = docker.get("network", "HOST")
    if network not in _DOCKER_NETWORKS:
        raise InvalidInput(f'"container.docker.network" {network!r} is not supported: HOST (the default) or NONE')
    return {"type": "DOCKER", "name": image}, _DOCKER_NETWORKS[network]
