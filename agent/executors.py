"""Custom executors: tasks whose TaskInfo names an ExecutorInfo, run by that executor through
Mesos's v1 executor HTTP API (`POST /api/v1/executor`, JSON).

    RunTaskMessage  -> the executor's container is launched (ExecutorInfo.command, its resources
                       and the first task's), with MESOS_AGENT_ENDPOINT and the ids in its
                       environment; the task waits for the executor
    SUBSCRIBE       <- a streaming answer (RecordIO: "<length>\\n<JSON event>"): SUBSCRIBED, then
                       LAUNCH for each task waiting, later LAUNCH, KILL, ACKNOWLEDGED, SHUTDOWN,
                       and HEARTBEAT every 30 s
    UPDATE          <- a TaskStatus with the executor's own uuid: through the status update
                       manager (agent/tasks.py); ACKNOWLEDGED goes back once the master acknowledges
    the container ends -> the executor's tasks not yet ended fail (REASON_EXECUTOR_TERMINATED),
                       and ExitedExecutorMessage tells the master, which frees what it held

A task after the first is given its resources from the Agent's allocator too, for as long as it
runs. After an agent restart, a checkpointing framework's executor still running is waited for:
it subscribes again (its SUBSCRIBE lists the tasks it holds, which are not launched again) and
goes on; past --executor_reregistration_timeout (2 s, as mesos-agent's default) it is killed and
its tasks fail with REASON_EXECUTOR_REREGISTRATION_TIMEOUT. Not yet: MESSAGE calls and events
(framework messages), executor authentication tokens.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import signal
import time

from aiohttp import web
from google.protobuf import json_format

from corral.files import write_atomic
from corral.types import CorralError, InvalidInput, NoSuchContainer

from . import messages as m
from .resources import Resources

log = logging.getLogger("corral.executors")

HEARTBEAT = 30.0                    # seconds between HEARTBEAT events
REREGISTRATION_TIMEOUT = 2.0        # mesos-agent's --executor_reregistration_timeout
SHUTDOWN_GRACE = 5.0                # ExecutorInfo.shutdown_grace_period's default


class Executor:
    def __init__(self, executors: "Executors", framework, info, container_id: str):
        self.executors, self.framework, self.info, self.container_id = executors, framework, info, container_id
        self.framework_id = framework.id.value
        self.id = info.executor_id.value
        self.runs: dict[str, object] = {}           # task id -> its Run
        self.waiting: list = []                     # Runs not yet given to the executor
        self.stream: web.StreamResponse | None = None
        self.unsubscribed = asyncio.Event()         # set to end the stream (the agent stops)
        self.subscribed_once = False
        self.end_reason = "REASON_EXECUTOR_TERMINATED"
        self.launched = asyncio.get_running_loop().create_future()

    # -- from the master ------------------------------------------------------------------------

    def add(self, run) -> None:
        run.executor = self
        self.runs[run.task_id] = run
        if self.stream is None:
            self.waiting.append(run)
        else:
            self.send("LAUNCH", {"task": _v1(run.task)})

    def kill(self, run, policy) -> None:
        if run in self.waiting:                     # the executor never saw it
            self.waiting.remove(run)
            self.executors.tasks._update(run, "TASK_KILLED", "REASON_TASK_KILLED_DURING_LAUNCH",
                                         "killed before the executor took it")
            return
        event = {"task_id": {"value": run.task_id}}
        if policy is not None:
            event["kill_policy"] = _v1(policy)
        self.send("KILL", event)

    def acknowledged(self, run, uuid: bytes) -> None:
        self.send("ACKNOWLEDGED", {"task_id": {"value": run.task_id}, "uuid": base64.b64encode(uuid).decode()})

    async def shutdown(self) -> None:
        """SHUTDOWN, then the container is killed past the executor's shutdown grace period."""
        grace = (self.info.shutdown_grace_period.nanoseconds / 1e9 if self.info.HasField("shutdown_grace_period")
                 else SHUTDOWN_GRACE)
        self.send("SHUTDOWN", {})
        agent = self.executors.tasks.agent
        try:
            await asyncio.wait_for(agent.wait(self.container_id), grace)
        except TimeoutError:
            await agent.kill(self.container_id, signal.SIGKILL)
        except NoSuchContainer:
            pass

    # -- the event stream -----------------------------------------------------------------------

    def send(self, kind: str, body: dict) -> None:
        if self.stream is None:
            return
        event = json.dumps({"type": kind, kind.lower(): body} if body else {"type": kind}).encode()
        self.executors.tasks._spawn(self._write(self.stream, b"%d\n%s" % (len(event), event)))

    async def _write(self, stream: web.StreamResponse, record: bytes) -> None:
        try:
            await stream.write(record)
        except (ConnectionError, RuntimeError):     # the executor went away: it may subscribe again
            pass


class Executors:
    def __init__(self, tasks):
        self.tasks = tasks
        self.running: dict[tuple[str, str], Executor] = {}      # (framework id, executor id) -> it

    def close(self) -> None:
        """End every executor's event stream (the agent stops; the executors run on)."""
        for executor in self.running.values():
            executor.unsubscribed.set()

    def add_routes(self, app: web.Application) -> None:
        from .api import PEER_ROUTE
        app.router.add_post("/api/v1/executor", self._call, name=PEER_ROUTE + "executor")

    # -- from the master, through agent/tasks.py ------------------------------------------------

    def run(self, framework, run) -> None:
        info = run.task.executor
        key = (framework.id.value, info.executor_id.value)
        executor = self.running.get(key)
        if executor is None:
            executor = self.running[key] = Executor(self, framework, info, run.container_id)
            run.launched.set_result(None)
            executor.add(run)
            self.tasks._spawn(self._launch(executor, run))
        else:
            run.container_id = executor.container_id
            executor.add(run)
            self.tasks._spawn(self._give(executor, run))
        write_atomic(os.path.join(run.directory, "executor.container"), executor.container_id, durable=True)

    def recovered(self, framework, run) -> None:
        """After an agent restart: a checkpointing framework's task under a custom executor. A
        live executor is waited for: it subscribes again (as Mesos's executors do when their
        framework checkpoints) and goes on; one that does not within the re-registration timeout
        is shut down, its tasks failed."""
        agent = self.tasks.agent
        alive = (run.container_id in agent.records
                 and agent.statuses(run.container_id)[-1]["state"] not in _AGENT_ENDED)
        if not alive:
            self.tasks._update(run, "TASK_FAILED", "REASON_EXECUTOR_TERMINATED",
                               "the executor ended while the agent was away")
            return
        key = (framework.id.value, run.task.executor.executor_id.value)
        executor = self.running.get(key)
        if executor is None:
            executor = self.running[key] = Executor(self, framework, run.task.executor, run.container_id)
            executor.launched.set_result(None)
            self.tasks._spawn(self._watch(executor))
        executor.add(run)
        if run.made:                                # the executor had it: it will not be launched again
            executor.waiting.remove(run)
        if len(executor.runs) > 1:
            try:                                    # a task after the first: its resources again
                agent.allocator.allocate(_owner(executor, run), _resources(run.task.resources))
            except CorralError as e:
                log.warning("task %s of a recovered executor: %s", run.task_id, e)

    def await_reregistration(self) -> None:
        """Shut down the recovered executors that have not subscribed again in time."""
        async def deadline():
            await asyncio.sleep(REREGISTRATION_TIMEOUT)
            for executor in list(self.running.values()):
                if not executor.subscribed_once:
                    executor.end_reason = "REASON_EXECUTOR_REREGISTRATION_TIMEOUT"
                    await self.tasks.agent.kill(executor.container_id, signal.SIGKILL)
        if self.running:
            self.tasks._spawn(deadline())

    async def _watch(self, executor: Executor) -> None:
        try:
            await self.tasks.agent.wait(executor.container_id)
        except NoSuchContainer:
            pass
        self._ended(executor)

    def shutdown_framework(self, framework_id: str) -> None:
        for (owner, _), executor in list(self.running.items()):
            if owner == framework_id:
                self.tasks._spawn(executor.shutdown())

    async def _launch(self, executor: Executor, run) -> None:
        agent = self.tasks.agent
        try:
            config = self.tasks._config(run, executor.info.command, executor.info.container
                                        if executor.info.HasField("container") else None)
            config.env = {**{k: v for k, v in config.env.items() if k != "MESOS_TASK_ID"},
                          **self._environment(executor)}
            request = _resources(executor.info.resources) + _resources(run.task.resources)
            await agent.launch(executor.container_id, config, request)
        except CorralError as e:
            executor.launched.set_result(None)
            del self.running[(executor.framework_id, executor.id)]
            for waiting in list(executor.runs.values()):
                self.tasks._update(waiting, "TASK_FAILED", "REASON_CONTAINER_LAUNCH_FAILED",
                                   f"Failed to launch the executor's container: {e}")
            return
        executor.launched.set_result(None)
        await self._watch(executor)

    async def _give(self, executor: Executor, run) -> None:
        """A task for a running executor: its resources from the Agent's allocator too."""
        try:
            self.tasks.agent.allocator.allocate(_owner(executor, run), _resources(run.task.resources))
        except CorralError as e:
            executor.runs.pop(run.task_id, None)
            if run in executor.waiting:
                executor.waiting.remove(run)
            run.launched.set_result(None)
            self.tasks._update(run, "TASK_FAILED", "REASON_CONTAINER_LAUNCH_FAILED", f"Failed to launch: {e}")
            return
        run.launched.set_result(None)

    def _ended(self, executor: Executor) -> None:
        self.running.pop((executor.framework_id, executor.id), None)
        executor.stream = None
        executor.unsubscribed.set()
        for run in executor.runs.values():
            self.tasks.agent.allocator.release(_owner(executor, run))
            self.tasks._update(run, "TASK_FAILED", executor.end_reason, "Executor terminated")
        if self.tasks.send is not None and self.tasks.slave_id:
            status = (self.tasks.agent.statuses(executor.container_id)[-1].get("exit_status")
                      if executor.container_id in self.tasks.agent.records else None)
            exited = m.ExitedExecutorMessage(status=status or 0)
            exited.slave_id.value = self.tasks.slave_id
            exited.framework_id.value = executor.framework_id
            exited.executor_id.value = executor.id
            self.tasks._spawn(self.tasks.send(exited))

    def released(self, run) -> None:
        """A task of an executor ended: what it was given beside the executor's container is free."""
        if run.executor is not None:
            self.tasks.agent.allocator.release(_owner(run.executor, run))

    def _environment(self, executor: Executor) -> dict[str, str]:
        flags = self.tasks.agent.flags
        return {"MESOS_FRAMEWORK_ID": executor.framework_id, "MESOS_EXECUTOR_ID": executor.id,
                "MESOS_AGENT_ENDPOINT": f"{flags.ip}:{flags.port}", "MESOS_SLAVE_PID": self.tasks.pid,
                "MESOS_SLAVE_ID": self.tasks.slave_id or "", "MESOS_AGENT_ID": self.tasks.slave_id or "",
                "MESOS_CHECKPOINT": "1" if executor.framework.checkpoint else "0",
                "MESOS_HTTP_COMMAND_EXECUTOR": "0",
                "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD": f"{SHUTDOWN_GRACE:g}secs"}

    # -- the v1 executor API ----------------------------------------------------------------------

    async def _call(self, request: web.Request) -> web.StreamResponse:
        if request.content_type != "application/json":
            return web.Response(status=415, text="corral's executor API speaks application/json\n")
        try:
            call = json.loads(await request.read())
            framework_id, executor_id = call["framework_id"]["value"], call["executor_id"]["value"]
            kind = call["type"]
        except (ValueError, KeyError, TypeError):
            raise InvalidInput("an executor call needs type, framework_id and executor_id") from None
        executor = self.running.get((framework_id, executor_id))
        if executor is None:
            raise InvalidInput(f"no executor {executor_id} of framework {framework_id} runs here")
        if kind == "SUBSCRIBE":
            return await self._subscribe(request, executor, call)
        if kind == "UPDATE":
            return self._update(executor, call.get("update") or {})
        if kind == "HEARTBEAT":
            return web.Response(status=202)
        raise InvalidInput(f"the executor call {kind!r} is not supported (SUBSCRIBE, UPDATE, HEARTBEAT)")

    async def _subscribe(self, request: web.Request, executor: Executor, call: dict) -> web.StreamResponse:
        stream = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await stream.prepare(request)
        executor.stream = stream
        executor.subscribed_once = True
        subscribe = call.get("subscribe") or {}
        held = {t.get("task_id", {}).get("value") for t in subscribe.get("unacknowledged_tasks") or []
                if isinstance(t, dict)}
        agent_info = {"hostname": self.tasks.agent.flags.hostname or os.uname().nodename,
                      "port": self.tasks.agent.flags.port, "id": {"value": self.tasks.slave_id or ""}}
        executor.send("SUBSCRIBED", {"executor_info": _v1(executor.info), "framework_info": _v1(executor.framework),
                                     "agent_info": agent_info, "container_id": {"value": executor.container_id}})
        waiting, executor.waiting = executor.waiting, []
        for run in waiting:
            await run.launched
            if run.task_id in executor.runs and run.latest not in _TERMINAL and run.task_id not in held:
                executor.send("LAUNCH", {"task": _v1(run.task)})
        try:
            while executor.stream is stream and not (request.transport is None or request.transport.is_closing()):
                try:
                    await asyncio.wait_for(executor.unsubscribed.wait(), HEARTBEAT)
                    break
                except TimeoutError:
                    executor.send("HEARTBEAT", {})
        finally:
            if executor.stream is stream:
                executor.stream = None
        return stream

    def _update(self, executor: Executor, update: dict) -> web.Response:
        try:
            status = json_format.ParseDict(_internal(update["status"]), m.TaskStatus(), ignore_unknown_fields=True)
        except (KeyError, json_format.ParseError) as e:
            raise InvalidInput(f"an UPDATE needs a TaskStatus: {e}") from None
        run = executor.runs.get(status.task_id.value)
        if run is None:
            raise InvalidInput(f"task {status.task_id.value} is not this executor's")
        if not status.uuid:
            raise InvalidInput("the executor's TaskStatus needs a uuid")
        status.source = m.ENUMS["Source"]["SOURCE_EXECUTOR"]
        status.executor_id.value = executor.id
        status.slave_id.value = self.tasks.slave_id or ""
        status.container_status.container_id.value = executor.container_id
        if not status.HasField("timestamp"):
            status.timestamp = time.time()
        self.tasks.record(run, status)
        if run.latest in _TERMINAL:
            self.released(run)
        return web.Response(status=202)


_AGENT_ENDED = frozenset({"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_LOST"})
_TERMINAL = frozenset({"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_LOST", "TASK_DROPPED",
                       "TASK_GONE", "TASK_GONE_BY_OPERATOR"})


def _owner(executor: Executor, run) -> str:
    return f"{executor.container_id}/{run.task_id}"


def _resources(items) -> Resources:
    return Resources.from_json([json_format.MessageToDict(r, preserving_proto_field_name=True) for r in items])


def _v1(message) -> dict:
    """A message as the v1 API's JSON: agent_id where the internal API says slave_id."""
    return _renamed(json_format.MessageToDict(message, preserving_proto_field_name=True), "slave_id", "agent_id")


def _internal(data: dict) -> dict:
    return _renamed(data, "agent_id", "slave_id")


def _renamed(value, old: str, new: str):
    if isinstance(value, dict):
        return {(new if k == old else k): _renamed(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_renamed(v, old, new) for v in value]
    return value
