"""Frameworks' tasks on this agent: run, kill, shut down, recover; and their status updates,
kept by Mesos's status update manager's rules.

Each task runs as a container of the Agent (agent/core.py), as standalone containers do, so the
two share one allocator and never overcommit each other; Mesos reports it under a command
executor's identity, executor id = task id. The container's status stream (TASK_STARTING,
TASK_RUNNING, its end, kept by the Agent's checkpoint) is the truth; the updates sent to the
master are derived from it, once each, and the tasks' checkpoint (agent/task_checkpoint.py)
says which were made.

Status updates, per task: each is appended durably to the task's updates file before it is
sent; one at a time is in flight, the oldest unacknowledged, resent with backoff (10 s doubling
to 10 min, as Mesos) until the master acknowledges its uuid; the next goes only then, so a
framework sees them in order. A task is done once its terminal update is acknowledged.

Recovery (Mesos's rule): the tasks of a framework that asked for checkpointing
(FrameworkInfo.checkpoint) live through an agent restart, are followed again, and their
unacknowledged updates resent; those that ended while the agent was away report their real end.
The tasks of a framework that did not are killed and forgotten: the master ends them for the
framework when the agent goes.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import signal
import time
import uuid

from google.protobuf.json_format import MessageToDict

from corral.files import read_text, remove_tree
from corral.types import CorralError, NoSuchContainer

from . import messages as m
from .checkpoint import TERMINAL_STATES as AGENT_TERMINAL_STATES
from . import task_checkpoint as checkpoint
from .resources import Resources

log = logging.getLogger("corral.tasks")

TERMINAL = frozenset({"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_LOST", "TASK_DROPPED",
                      "TASK_GONE", "TASK_GONE_BY_OPERATOR"})
RETRY_MIN, RETRY_MAX = 10.0, 600.0      # Mesos's STATUS_UPDATE_RETRY_INTERVAL_MIN and _MAX
COMMAND_EXECUTOR_GRACE = 3.0            # the command executor's kill grace period without a KillPolicy
# The states a command executor reports itself; the rest (a limitation, a failed launch, a loss)
# come from the agent.
_EXECUTOR_SOURCED_REASONS = (None, "")
_NETWORKS = {m.DOCKER_HOST: "HOST", m.DOCKER_BRIDGE: "BRIDGE", m.DOCKER_NONE: "NONE", m.DOCKER_USER: "USER"}


class Run:
    """One task's run: its container, the updates made for it, those not yet acknowledged."""

    def __init__(self, framework_id: str, task, container_id: str, directory: str):
        self.framework_id, self.task, self.container_id, self.directory = framework_id, task, container_id, directory
        self.made: list[str] = []                   # the states an update was made for, in order
        self.pending: collections.deque = collections.deque()    # StatusUpdates not acknowledged
        self.backoff = RETRY_MIN
        self.retry: asyncio.TimerHandle | None = None
        self.launched = asyncio.get_running_loop().create_future()   # the launch is over, however it went
        self.orphaned = False                       # its framework was shut down: nobody takes its updates
        self.executor = None                        # agent.executors.Executor: a custom executor runs it

    @property
    def task_id(self) -> str:
        return self.task.task_id.value

    @property
    def latest(self) -> str | None:
        return self.made[-1] if self.made else None

    @property
    def done(self) -> bool:
        return self.latest in TERMINAL and not self.pending


class Tasks:
    def __init__(self, agent):
        self.agent = agent
        self.root = os.path.join(agent.flags.work_dir, "meta", "frameworks")
        self.frameworks: dict[str, object] = {}         # framework id -> FrameworkInfo
        self.runs: dict[tuple[str, str], Run] = {}      # (framework id, task id) -> its run, until done
        self.slave_id: str | None = None
        self.send = None                                # async send(message) -> bool, set by the master link
        self.pid = ""                                   # the agent's libprocess id, where acknowledgements go
        self.connected = False                          # registered: updates may go out
        self._background: set[asyncio.Task] = set()
        from .executors import Executors
        self.executors = Executors(self)

    # -- the master's messages ------------------------------------------------------------------

    def run_task(self, message) -> None:
        run = self._new_run(message.framework, message.task, message.framework_id.value)
        if run is None:
            return
        if run.task.HasField("executor"):
            self.executors.run(message.framework, run)
        else:
            self._spawn(self._run(run))

    def run_task_group(self, message) -> None:
        """Task groups need Mesos's default executor, which corral does not have yet: each task
        fails at once, saying so."""
        for task in message.task_group.tasks:
            run = self._new_run(message.framework, task, "")
            if run is not None:
                self._refuse(run, "task groups (the default executor) are not supported yet")

    def _refuse(self, run: Run, why: str) -> None:
        run.launched.set_result(None)
        self._update(run, "TASK_FAILED", "REASON_CONTAINER_LAUNCH_FAILED", f"Failed to launch container: {why}")

    def _new_run(self, framework, task, framework_id: str) -> Run | None:
        """Checkpoint the framework and the task (durably) and make the task's run; None for a
        bad or duplicate id (logged)."""
        framework_id = framework.id.value or framework_id
        if not checkpoint.is_id(framework_id) or (framework_id, task.task_id.value) in self.runs:
            log.warning("ignoring task %r of framework %r: a bad or duplicate id", task.task_id.value, framework_id)
            return None
        if not framework.HasField("id"):
            framework.id.value = framework_id
        self.frameworks[framework_id] = framework
        container_id = str(uuid.uuid4())
        directory = os.path.join(self.root, framework_id, "runs", container_id)
        checkpoint.write_run(self.root, framework, task, directory)
        run = self.runs[(framework_id, task.task_id.value)] = Run(framework_id, task, container_id, directory)
        return run

    def acknowledge(self, message) -> None:
        run = self.runs.get((message.framework_id.value, message.task_id.value))
        if run is None or not run.pending or run.pending[0].status.uuid != message.uuid:
            return                                      # a late or repeated acknowledgement
        checkpoint.append(run, m.StatusUpdateRecord(type=m.ENUMS["RecordType"]["ACK"], uuid=message.uuid))
        run.pending.popleft()
        self._cancel_retry(run)
        run.backoff = RETRY_MIN
        if run.executor is not None:
            run.executor.acknowledged(run, message.uuid)
        if run.done:
            self._done(run)
        elif run.pending:
            self._send_oldest(run)

    def kill_task(self, message) -> None:
        run = self.runs.get((message.framework_id.value, message.task_id.value))
        if run is None:
            self._unknown(message.framework_id.value, message.task_id, None, "REASON_TASK_UNKNOWN",
                          "Cannot find the task to kill")
            return
        if run.latest in TERMINAL:
            return
        if run.executor is not None:
            run.executor.kill(run, message.kill_policy if message.HasField("kill_policy") else None)
            return
        policy = message.kill_policy if message.HasField("kill_policy") else run.task.kill_policy
        grace = policy.grace_period.nanoseconds / 1e9 if policy.HasField("grace_period") else COMMAND_EXECUTOR_GRACE
        self._spawn(self._kill(run, grace))

    def shutdown_framework(self, framework_id: str) -> None:
        """Kill the framework's tasks; the master has forgotten the framework, so their updates are
        recorded but not sent."""
        for run in [r for r in self.runs.values() if r.framework_id == framework_id]:
            run.orphaned = True
            self._cancel_retry(run)
            for update in run.pending:
                checkpoint.append(run, m.StatusUpdateRecord(type=m.ENUMS["RecordType"]["ACK"], uuid=update.status.uuid))
            run.pending.clear()
            if run.done:
                self._done(run)
            elif run.executor is None:
                self._spawn(self._kill(run, COMMAND_EXECUTOR_GRACE))
        self.executors.shutdown_framework(framework_id)

    def connected_to_master(self, slave_id: str) -> None:
        """(Re)registered: send every task's oldest unacknowledged update now."""
        self.slave_id, self.connected = slave_id, True
        for run in list(self.runs.values()):
            if run.pending:
                self._cancel_retry(run)
                self._send_oldest(run)

    def disconnected(self) -> None:
        self.connected = False

    def reconcile(self, reconciliations) -> None:
        """SlaveReregisteredMessage: a task the master believes runs here and this agent does not
        know is answered TASK_DROPPED (TASK_LOST to a framework that is not partition-aware), as
        mesos-agent answers; the master then tells the framework."""
        for reconciliation in reconciliations:
            framework = reconciliation.framework if reconciliation.HasField("framework") else None
            for status in reconciliation.statuses:
                if (reconciliation.framework_id.value, status.task_id.value) not in self.runs:
                    self._unknown(reconciliation.framework_id.value, status.task_id, framework,
                                  "REASON_RECONCILIATION", "Reconciliation: task unknown to the agent")

    def _unknown(self, framework_id: str, task_id, framework, reason: str, message: str) -> None:
        """Tell the master once that a task is not here. Nothing of it is kept to resend: there is
        nothing to recover, and the master asks again when it re-registers the agent."""
        framework = framework or self.frameworks.get(framework_id)
        aware = framework is not None and any(c.type == m.FRAMEWORK_PARTITION_AWARE for c in framework.capabilities)
        status = m.TaskStatus(state=m.ENUMS["TaskState"]["TASK_DROPPED" if aware else "TASK_LOST"], message=message,
                              source=m.ENUMS["Source"]["SOURCE_SLAVE"], reason=m.ENUMS["Reason"][reason],
                              timestamp=time.time(), uuid=uuid.uuid4().bytes)
        status.task_id.CopyFrom(task_id)
        status.slave_id.value = self.slave_id or ""
        update = m.StatusUpdate(status=status, timestamp=status.timestamp, uuid=status.uuid)
        update.framework_id.value = framework_id
        update.slave_id.value = self.slave_id or ""
        if self.send is not None:
            self._spawn(self.send(m.StatusUpdateMessage(update=update, pid=self.pid)))

    # -- re-registration ------------------------------------------------------------------------

    def reregistration(self, message) -> None:
        """Fill a ReregisterSlaveMessage's tasks, frameworks and executors: every task not yet done,
        and the custom executors running. Command executors are the agent's own, so no
        ExecutorInfo is listed for them (as mesos-agent does)."""
        listed = set()
        for run in self.runs.values():
            if run.orphaned:
                continue
            task = message.tasks.add(name=run.task.name, state=m.ENUMS["TaskState"][run.latest or "TASK_STAGING"])
            task.task_id.CopyFrom(run.task.task_id)
            task.framework_id.value = run.framework_id
            task.slave_id.value = self.slave_id
            task.resources.extend(run.task.resources)
            if run.task.HasField("container"):
                task.container.CopyFrom(run.task.container)
            if run.task.HasField("kill_policy"):
                task.kill_policy.CopyFrom(run.task.kill_policy)
            if run.executor is not None:
                task.executor_id.value = run.executor.id
            if run.pending:
                task.status_update_state = run.pending[0].status.state
                task.status_update_uuid = run.pending[0].status.uuid
                task.statuses.append(run.pending[0].status)
            listed.add(run.framework_id)
        for framework_id in sorted(listed):
            message.frameworks.append(self.frameworks[framework_id])
        for executor in self.executors.running.values():
            info = message.executor_infos.add()
            info.CopyFrom(executor.info)
            info.framework_id.value = executor.framework_id

    # -- running --------------------------------------------------------------------------------

    async def _run(self, run: Run) -> None:
        try:
            config = self._config(run)
            request = Resources.from_json([MessageToDict(r, preserving_proto_field_name=True)
                                           for r in run.task.resources])
            await self.agent.launch(run.container_id, config, request)
        except CorralError as e:
            self._update(run, "TASK_FAILED", "REASON_CONTAINER_LAUNCH_FAILED", f"Failed to launch container: {e}")
            return
        finally:
            run.launched.set_result(None)
        await self._follow(run)

    async def _follow(self, run: Run) -> None:
        """Make the container's updates as its stream grows: now, and at its end."""
        try:
            self._sync(run)
            await self.agent.wait(run.container_id)
            self._sync(run)
        except NoSuchContainer:
            self._update(run, "TASK_LOST", "REASON_EXECUTOR_TERMINATED", "the agent no longer knows its container")

    def _sync(self, run: Run) -> None:
        for status in self.agent.statuses(run.container_id):
            if status["state"] not in run.made and run.latest not in TERMINAL:
                self._update(run, status["state"], status.get("reason"), status.get("message") or "")

    async def _kill(self, run: Run, grace: float) -> None:
        """SIGTERM, then SIGKILL past the grace period, as the command executor kills."""
        await run.launched
        if run.latest in TERMINAL:
            return
        framework = self.frameworks.get(run.framework_id)
        if framework is not None and not run.orphaned and any(
                c.type == m.FRAMEWORK_TASK_KILLING_STATE for c in framework.capabilities):
            self._sync(run)
            self._update(run, "TASK_KILLING", None, "")
        try:
            await self.agent.kill(run.container_id, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.agent.wait(run.container_id), grace)
            except TimeoutError:
                await self.agent.kill(run.container_id, signal.SIGKILL)
        except NoSuchContainer:
            pass

    def _config(self, run: Run, command=None, container_info=None):
        """The task's command and container (or those given: a custom executor's) as a
        ContainerConfig, by the operator API's rules, with the environment a command executor
        gives its task."""
        from .shapes import container_config
        task = run.task
        command = command if command is not None else task.command
        info = container_info if container_info is not None else (
            task.container if task.HasField("container") else None)
        call: dict = {"command": MessageToDict(command, preserving_proto_field_name=True)}
        if info is not None:
            container: dict = {"type": "DOCKER" if info.type == m.CONTAINER_DOCKER else "MESOS"}
            if info.HasField("hostname"):
                container["hostname"] = info.hostname
            if info.HasField("docker"):
                container["docker"] = {"image": info.docker.image, "network": _NETWORKS.get(info.docker.network)}
            if info.mesos.HasField("image"):
                image = info.mesos.image
                kind = "DOCKER" if image.type == m.IMAGE_DOCKER else "APPC"
                container["mesos"] = {"image": {"type": kind, "docker": {"name": image.docker.name}}}
            call["container"] = container
        config = container_config(call, "task")
        config.env = {**config.env, "MESOS_TASK_ID": run.task_id, "MESOS_EXECUTOR_ID": run.task_id,
                      "MESOS_FRAMEWORK_ID": run.framework_id}
        return config

    # -- status updates -------------------------------------------------------------------------

    def _update(self, run: Run, state: str, reason: str | None, message: str) -> None:
        """Make an update: durable first, then queued, and sent if it is the oldest."""
        if run.latest in TERMINAL:
            return
        source = "SOURCE_EXECUTOR" if reason in _EXECUTOR_SOURCED_REASONS else "SOURCE_SLAVE"
        now = time.time()
        status = m.TaskStatus(state=m.ENUMS["TaskState"][state], message=message, source=m.ENUMS["Source"][source],
                              timestamp=now, uuid=uuid.uuid4().bytes)
        status.task_id.CopyFrom(run.task.task_id)
        status.executor_id.value = run.executor.id if run.executor is not None else run.task_id
        status.slave_id.value = self.slave_id or ""
        status.container_status.container_id.value = run.container_id
        if reason:
            status.reason = m.ENUMS["Reason"][reason]
        self.record(run, status)

    def record(self, run: Run, status) -> None:
        """The status update manager: a status (the agent's, or a custom executor's with its own
        uuid) made durable, queued, and sent if it is the task's oldest unacknowledged one."""
        if run.latest in TERMINAL:
            return
        update = m.StatusUpdate(status=status, timestamp=status.timestamp, uuid=status.uuid)
        update.framework_id.value = run.framework_id
        update.executor_id.CopyFrom(status.executor_id)
        update.slave_id.value = self.slave_id or ""
        checkpoint.append(run, m.StatusUpdateRecord(type=m.ENUMS["RecordType"]["UPDATE"], update=update))
        run.made.append(m.state_name(status.state))
        if run.orphaned:
            checkpoint.append(run, m.StatusUpdateRecord(type=m.ENUMS["RecordType"]["ACK"], uuid=status.uuid))
            if run.done:
                self._done(run)
            return
        run.pending.append(update)
        if len(run.pending) == 1:
            self._send_oldest(run)

    def _done(self, run: Run) -> None:
        """Every update of the run acknowledged: nothing of it is left to recover or resend. Its
        container, ended, stays with its sandbox (GET_CONTAINERS, REMOVE_CONTAINER)."""
        self.runs.pop((run.framework_id, run.task_id), None)
        remove_tree(run.directory)
        if not any(r.framework_id == run.framework_id for r in self.runs.values()):
            self.frameworks.pop(run.framework_id, None)
            remove_tree(os.path.join(self.root, run.framework_id))

    def _send_oldest(self, run: Run) -> None:
        if not self.connected or not run.pending or self.send is None:
            return
        update = m.StatusUpdate()
        update.CopyFrom(run.pending[0])
        update.latest_state = m.ENUMS["TaskState"][run.latest]
        self._spawn(self.send(m.StatusUpdateMessage(update=update, pid=self.pid)))
        run.retry = asyncio.get_running_loop().call_later(run.backoff, self._resend, run)

    def _resend(self, run: Run) -> None:
        run.retry = None
        if self.runs.get((run.framework_id, run.task_id)) is run:
            run.backoff = min(run.backoff * 2, RETRY_MAX)
            self._send_oldest(run)

    def _cancel_retry(self, run: Run) -> None:
        if run.retry is not None:
            run.retry.cancel()
            run.retry = None

    # -- recovery -------------------------------------------------------------------------------

    async def recover(self, slave_id: str | None) -> None:
        """After Agent.recover: read every run back, follow those of checkpointing frameworks,
        kill and forget the others."""
        self.slave_id = slave_id
        for framework_id in checkpoint.listdir(self.root):
            framework_dir = os.path.join(self.root, framework_id)
            raw = checkpoint.read_bytes(os.path.join(framework_dir, "framework.info"))
            if raw is None or not checkpoint.listdir(os.path.join(framework_dir, "runs")):
                remove_tree(framework_dir)
                continue
            framework = self.frameworks[framework_id] = m.FrameworkInfo.FromString(raw)
            for container_id in checkpoint.listdir(os.path.join(framework_dir, "runs")):
                directory = os.path.join(framework_dir, "runs", container_id)
                raw = checkpoint.read_bytes(os.path.join(directory, "task.info"))
                if raw is None:             # cut short before anything was launched
                    remove_tree(directory)
                    continue
                run = Run(framework_id, m.TaskInfo.FromString(raw), container_id, directory)
                if run.task.HasField("executor"):       # the container is its executor's
                    run.container_id = (read_text(os.path.join(directory, "executor.container")) or "").strip()
                checkpoint.replay(run)
                if run.done:
                    remove_tree(directory)          # a removal cut short
                    continue
                if not framework.checkpoint:
                    await self._forget(run)
                    continue
                self.runs[(framework_id, run.task_id)] = run
                run.launched.set_result(None)
                if run.task.HasField("executor"):
                    self.executors.recovered(framework, run)
                elif container_id in self.agent.records:
                    self._spawn(self._follow(run))
                else:
                    self._update(run, "TASK_FAILED", "REASON_CONTAINER_LAUNCH_FAILED",
                                 "the agent stopped before the task's container was launched")
        self.executors.await_reregistration()

    async def _forget(self, run: Run) -> None:
        """End the run's container and drop its checkpoint: nobody will be told of it."""
        if run.container_id in self.agent.records:
            if self.agent.statuses(run.container_id)[-1]["state"] not in AGENT_TERMINAL_STATES:
                await self.agent.kill(run.container_id, signal.SIGKILL)
                await self.agent.wait(run.container_id)
        remove_tree(run.directory)

    # -- helpers --------------------------------------------------------------------------------

    def _spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a task's work failed", exc_info=task.exception())

    async def close(self) -> None:
        """The agent stops: the tasks of frameworks that did not ask for checkpointing end with it
        (a command executor of such a framework exits when its agent does); the others run on."""
        self.executors.close()
        for run in self.runs.values():
            self._cancel_retry(run)
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        for run in list(self.runs.values()):
            framework = self.frameworks.get(run.framework_id)
            if framework is not None and not framework.checkpoint:
                await self._forget(run)
