"""The agent API's calls that read the agent's state (GET_*, LIST_FILES, READ_FILE), and the
few that set something of the agent's own (SET_LOGGING_LEVEL, PRUNE_IMAGES), in the shapes
of Mesos's agent.proto: each takes the Agent and the call's body and answers the reply's
JSON, or a bare HTTP response.
"""

from __future__ import annotations

import asyncio
import base64
import socket

from aiohttp import web

import corral
from corral.provisioner.errors import ImageNotFound
from corral.types import CorralError, InvalidInput

from . import metrics, sandboxes, verbosity
from .shapes import JsonObject, image_of, in_range, required, uint64

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
    level = required(call, "level", int)
    if not 0 <= level < 1 << 32:
        raise InvalidInput(f'"{call.path("level")}" is out of range: {level} is not a uint32')
    required(call, "duration", dict)
    nanoseconds = required(call.object("duration"), "nanoseconds", int)
    if not 0 <= nanoseconds < 1 << 63:
        raise InvalidInput(f'"{call.path("duration")}.nanoseconds" is out of range: {nanoseconds}')
    verbosity.VERBOSITY.set(level, nanoseconds / 1e9)
    return web.Response(status=200)


async def list_files(agent, call):
    path = required(call, "path", str)
    return {"file_infos": await asyncio.to_thread(sandboxes.browse, sandboxes.attached(agent), path)}


async def read_file(agent, call):
    """Mesos's ReadFile: the file's size and up to 16 pages of it from `offset` ("data", base64
    as protobuf's JSON has bytes); from past the end, none."""
    path = required(call, "path", str)
    offset = in_range(uint64(call, "offset", required=True), call.path("offset"))
    length = uint64(call, "length")
    size, data = await asyncio.to_thread(sandboxes.read, sandboxes.attached(agent), path, offset, length)
    return {"size": size, "data": base64.b64encode(data).decode()}


async def prune_images(agent, call):
    """Mesos's PruneImages: the stored images go but those `excluded_images` names and those that
    containers still running were launched from; then the layers that nothing uses any more."""
    keep = [image_of(JsonObject(image, f"{call.path('excluded_images')}[{index}]"))
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
