"""The agent's link to a Mesos master: registration, pings, and the master's messages.

    corral agent --master=127.0.0.1:5050      (or --master=file:///path holding HOST:PORT)

The agent is the libprocess process `slave(1)@<--ip>:<--port>`: it sends its messages to
`master@HOST:PORT` (agent/libprocess.py) and takes the master's at POST /slave(1)/mesos.internal.<Message>
on its own HTTP server. The state machine is mesos-agent's (src/slave/slave.cpp):

    DISCONNECTED -> registering: RegisterSlaveMessage, or ReregisterSlaveMessage once the master
                    gave an id (kept in meta/slave_id), with its tasks and frameworks; resent after a
                    random wait of up to 1 s, doubling to 1 min, until the master answers
    RUNNING      <- SlaveRegisteredMessage / SlaveReregisteredMessage: status updates go out
    back to registering when the master's connection breaks, when its pings stop for longer than
    the master's total ping timeout, or when a ping says the master thinks us disconnected.

A message whose Libprocess-From is not the master the agent registers with is dropped, as
mesos-agent drops it. `zk://` masters (leader election through ZooKeeper) are not supported.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import sys
import uuid

from aiohttp import web
from google.protobuf import json_format

from corral.types import InvalidInput

from . import messages as m
from .libprocess import UPID, Link
from .task_checkpoint import read_slave_id, write_slave_id
from .tasks import Tasks

log = logging.getLogger("corral.master")

MESOS_VERSION = "1.11.1"            # the protocol spoken; the master refuses agents older than 1.0
REGISTRATION_BACKOFF = 1.0          # mesos-agent's --registration_backoff_factor
REGISTER_RETRY_MAX = 60.0           # mesos-agent's REGISTER_RETRY_INTERVAL_MAX
DEFAULT_PING_TIMEOUT = 75.0         # the master's agent_ping_timeout x max_agent_ping_timeouts
ME = "slave(1)"


def master_address(text: str) -> UPID:
    """The master's process from --master's HOST:PORT (checked by agent/flags.py)."""
    host, _, port = text.rpartition(":")
    try:
        address = socket.gethostbyname(host)
    except OSError:
        raise InvalidInput(f"--master: cannot resolve the master's host {host!r}") from None
    return UPID("master", address, int(port))


async def attach(agent, app: web.Application, on_shutdown) -> "MasterLink":
    """Recover the frameworks' tasks and route the master's messages to them; call start() once
    the HTTP server listens."""
    tasks = agent.tasks = Tasks(agent)         # the operator API lists them (GET_TASKS, GET_FRAMEWORKS...)
    await tasks.recover(read_slave_id(agent.flags.work_dir))
    link = MasterLink(agent, tasks, on_shutdown)
    link.add_routes(app)
    return link


class MasterLink:
    def __init__(self, agent, tasks: Tasks, on_shutdown=None):
        flags = agent.flags
        self.agent, self.tasks, self.flags = agent, tasks, flags
        self.master = master_address(flags.master)
        self.me = UPID(ME, flags.ip, flags.port)
        self.link = Link(self.me, self.master, on_broken=self._lost)
        self.slave_id: str | None = read_slave_id(flags.work_dir)
        self.state = "DISCONNECTED"
        self.on_shutdown = on_shutdown
        self.ping_timeout = DEFAULT_PING_TIMEOUT
        self._registering: asyncio.Task | None = None
        self._ping_timer: asyncio.TimerHandle | None = None
        self._resource_version = uuid.uuid4().bytes
        tasks.send, tasks.pid = self.send, str(self.me)

    def add_routes(self, app: web.Application) -> None:
        from .api import PEER_ROUTE
        app.router.add_post(f"/{ME}/{{name}}", self._receive, name=PEER_ROUTE + "libprocess")
        self.tasks.executors.add_routes(app)

    async def start(self) -> None:
        self._register()

    async def close(self) -> None:
        await self.tasks.close()
        if self._registering is not None:
            self._registering.cancel()
            await asyncio.gather(self._registering, return_exceptions=True)
        if self._ping_timer is not None:
            self._ping_timer.cancel()
        await self.link.close()

    async def send(self, message) -> bool:
        return await self.link.send(message, m.wire_name(message))

    # -- registration ---------------------------------------------------------------------------

    def _register(self) -> None:
        """Start (re-)registering, unless that is under way."""
        self.state = "DISCONNECTED"
        self.tasks.disconnected()
        if self._registering is None or self._registering.done():
            self._registering = asyncio.get_running_loop().create_task(self._reliable_registration())

    async def _reliable_registration(self) -> None:
        await asyncio.sleep(random.uniform(0, REGISTRATION_BACKOFF))
        backoff = REGISTRATION_BACKOFF
        while self.state != "RUNNING":
            await self.send(self._registration_message())
            backoff = min(backoff * 2, REGISTER_RETRY_MAX)
            await asyncio.sleep(random.uniform(0, backoff))

    def _registration_message(self):
        info = self._slave_info()
        capabilities = [m.Capability(type=t) for t in (m.AGENT_MULTI_ROLE, m.AGENT_HIERARCHICAL_ROLE,
                                                         m.AGENT_RESERVATION_REFINEMENT)]
        version = m.UUID(value=self._resource_version)
        if self.slave_id is None:
            return m.RegisterSlaveMessage(slave=info, version=MESOS_VERSION, agent_capabilities=capabilities,
                                          resource_version_uuid=version)
        info.id.value = self.slave_id
        message = m.ReregisterSlaveMessage(slave=info, version=MESOS_VERSION, agent_capabilities=capabilities,
                                           resource_version_uuid=version)
        self.tasks.reregistration(message)
        return message

    def _slave_info(self):
        info = m.SlaveInfo(hostname=self.flags.hostname or socket.gethostname(), port=self.flags.port,
                           checkpoint=True)
        for item in self.agent.total.to_json():
            resource = info.resources.add(name=item["name"], type=m.ENUMS["ValueType"][item["type"]],
                                          role=item.get("role", "*"))
            if item["type"] == "SCALAR":
                resource.scalar.value = item["scalar"]["value"]
            elif item["type"] == "RANGES":
                for span in item["ranges"]["range"]:
                    resource.ranges.range.add(begin=span["begin"], end=span["end"])
            else:
                resource.set.item.extend(item["set"]["item"])
        for attribute in self.flags.attributes or []:
            json_format.ParseDict(attribute, info.attributes.add())
        return info

    def _lost(self) -> None:
        if self.state == "RUNNING":
            log.warning("lost the master %s: re-registering", self.master)
            print(f"corral agent: lost the master {self.master}; re-registering", file=sys.stderr, flush=True)
        self._register()

    # -- the master's messages ------------------------------------------------------------------

    async def _receive(self, request: web.Request) -> web.Response:
        kind = m.message_class(request.match_info["name"])
        sender = request.headers.get("Libprocess-From") or request.headers.get("User-Agent", "")[len("libprocess/"):]
        try:
            if UPID.parse(sender) != self.master or request.remote != self.master.host:
                return web.Response(status=202)     # not our master's: dropped, as mesos-agent drops it
        except InvalidInput:
            return web.Response(status=400, text="a libprocess message needs Libprocess-From: id@host:port\n")
        if kind is None:
            return web.Response(status=202)         # a message this agent does not handle
        try:
            message = kind.FromString(await request.read())
        except Exception:       # the protobuf library's DecodeError and its kin
            return web.Response(status=400, text=f"not a {kind.DESCRIPTOR.name}\n")
        handler = getattr(self, "_on_" + kind.DESCRIPTOR.name, None)
        if handler is not None:
            handler(message)
        return web.Response(status=202)

    def _on_SlaveRegisteredMessage(self, message) -> None:
        self._registered(message.slave_id.value, message)

    def _on_SlaveReregisteredMessage(self, message) -> None:
        if self.slave_id is not None and message.slave_id.value != self.slave_id:
            log.error("the master re-registered this agent as %s, not %s", message.slave_id.value, self.slave_id)
            return
        self._registered(message.slave_id.value, message)
        self.tasks.reconcile(message.reconciliations)

    def _registered(self, slave_id: str, message) -> None:
        if self.state == "RUNNING":
            return                          # an answer to a resent registration
        if self.slave_id != slave_id:
            write_slave_id(self.flags.work_dir, slave_id)
            self.slave_id = slave_id
        if message.HasField("connection") and message.connection.total_ping_timeout_seconds > 0:
            self.ping_timeout = message.connection.total_ping_timeout_seconds
        self.state = "RUNNING"
        print(f"corral agent: registered with the master {self.master} as {slave_id}", file=sys.stderr, flush=True)
        self._reset_ping_timer()
        self.tasks.connected_to_master(slave_id)

    def _on_PingSlaveMessage(self, message) -> None:
        asyncio.get_running_loop().create_task(self.send(m.PongSlaveMessage()))
        self._reset_ping_timer()
        if not message.connected and self.state == "RUNNING":
            log.warning("the master thinks this agent disconnected: re-registering")
            self._register()

    def _reset_ping_timer(self) -> None:
        if self._ping_timer is not None:
            self._ping_timer.cancel()
        self._ping_timer = asyncio.get_running_loop().call_later(self.ping_timeout, self._lost)

    def _on_RunTaskMessage(self, message) -> None:
        self.tasks.run_task(message)

    def _on_RunTaskGroupMessage(self, message) -> None:
        self.tasks.run_task_group(message)

    def _on_KillTaskMessage(self, message) -> None:
        self.tasks.kill_task(message)

    def _on_StatusUpdateAcknowledgementMessage(self, message) -> None:
        self.tasks.acknowledge(message)

    def _on_ShutdownFrameworkMessage(self, message) -> None:
        self.tasks.shutdown_framework(message.framework_id.value)

    def _on_ShutdownExecutorMessage(self, message) -> None:
        # A command executor's id is its task's.
        self.tasks.kill_task(m.KillTaskMessage(framework_id=message.framework_id,
                                               task_id=m.TaskID(value=message.executor_id.value)))

    def _on_UpdateFrameworkMessage(self, message) -> None:
        if message.framework_id.value in self.tasks.frameworks and message.HasField("framework_info"):
            self.tasks.frameworks[message.framework_id.value] = message.framework_info

    def _on_ShutdownMessage(self, message) -> None:
        """The master refuses this agent (it was removed): as mesos-agent, shut down its frameworks
        and stop; a new start registers afresh."""
        print(f"corral agent: the master shut this agent down: {message.message}", file=sys.stderr, flush=True)
        for framework_id in list(self.tasks.frameworks):
            self.tasks.shutdown_framework(framework_id)
        try:
            os.unlink(os.path.join(self.flags.work_dir, "meta", "slave_id"))
        except FileNotFoundError:
            pass
        if self.on_shutdown is not None:
            self.on_shutdown()
