"""The Docker containerizer: containers run by a real dockerd, through the docker SDK.

Mesos's docker containerizer, in corral's words:
- it takes only containers with a DOCKER image that asked for it (or any such container when it
  is the only containerizer configured); everything else is NOT_SUPPORTED;
- resources map as Mesos maps them: cpu shares max(1024 x cpus, 2), a CFS quota with
  cgroups_enable_cfs, a memory limit (swap included, so none is used);
- the sandbox is bind-mounted at /mnt/mesos/sandbox (MESOS_SANDBOX) and is the working dir;
  host networking unless the config names another network (then `ports` are published);
- containers are named corral-<id> and labelled with the id and this corral's runtime dir:
  recovery re-attaches what the checkpoint knows and removes only corral's own orphans;
- containers are not removed when they exit, so their real exit code and OOM verdict survive
  a corral restart; destroy removes them;
- stdin and a tty as `docker run -i`/`-t` asks them (OpenStdin, StdinOnce, Tty); attach through
  dockerd's attach endpoint (hijack.py), a foreground run's before the start, so that no output
  is missed.

State: <runtime-dir>/docker/containers/<id>/ holds config.json (with the docker id),
kill.json and termination.json, in the layout every containerizer shares (containerizers/state.py).
Every call to dockerd blocks (engine.py: through the docker SDK, or for the CLI plain HTTP on
the socket): SyncDockerContainerizer is used as is by the CLI and on threads by
DockerContainerizer (containerizer.py), the asyncio face, which also copies each container's
output into its sandbox's stdout and stderr, as Mesos's docker executor does.
"""

from __future__ import annotations

import os
import time

from corral.cpu import CFS_PERIOD_US, CPU_SHARES_PER_CPU
from corral.types import (LAUNCHED, REASON_CONTAINER_LIMITATION_MEMORY, ContainerConfig, CorralError, Limitation,
                          NoSuchContainer, Resources, Termination, Unavailable)

from ..base import Capabilities, End, SyncContainerizer
from ..logs import RotatingFile
from ..state import ContainerFiles, state_dir
from .create import LABEL_ID, LABEL_OWNER, NAME_PREFIX, cgroup_limits, create_body
from .engine import Engine, EngineError, NotFound, default_socket
from .hijack import Attachment, Hijacked

class SyncDockerContainerizer(SyncContainerizer):
    name = "docker"
    capabilities = Capabilities(images=True, networks=True, exec=True, io=True)

    def __init__(self, work_dir: str, runtime_dir: str, socket: str | None = None,
                 cgroups_enable_cfs: bool = False, kill_orphans: bool = True, only: bool = False,
                 timeout: float = 30.0, sdk: bool = True, detach_keys: str | None = None):
        """`sdk`: False speaks plain HTTP on a unix socket instead of importing the docker SDK
        (the CLI's choice: the SDK's import alone costs more than a `docker run`).
        `detach_keys`: the keys (Docker's format) that dockerd watches for on the stdin of a tty
        attach or exec, as the docker CLI passes its --detach-keys (None: dockerd's default,
        ctrl-p,ctrl-q): the CLI watches for the same keys first, so that dockerd never cuts a
        session short on keys of its own."""
        super().__init__(work_dir, state_dir(runtime_dir, self.name))
        self.owner = os.path.realpath(runtime_dir)
        self.socket = socket or default_socket()
        self.cgroups_enable_cfs = cgroups_enable_cfs
        self.kill_orphans = kill_orphans
        self.only = only
        self.timeout = timeout
        self.engine = Engine(self.socket, timeout, sdk=sdk)
        self.detach_keys = detach_keys
        # Foreground runs' attach connections, made before the start (launch), for attach() to hand over.
        self._attached: dict[str, Hijacked] = {}

    @staticmethod
    def docker_id(files: ContainerFiles) -> str:
        return files.launch_record().get("docker_id") or NAME_PREFIX + files.container_id

    def inspect(self, files: ContainerFiles) -> dict | None:
        """dockerd's view of the container; None when dockerd no longer has it."""
        return self.engine.inspect(self.docker_id(files))

    # -- launch -----------------------------------------------------------------------------

    def supports(self, config: ContainerConfig) -> bool:
        docker_image = bool(config.image) and config.image.get("type", "DOCKER") == "DOCKER" and not config.rootfs
        asked = config.containerizer == self.name or (config.containerizer is None and self.only)
        return docker_image and asked

    def _start(self, files: ContainerFiles, config: ContainerConfig, record: dict) -> str:
        create = create_body(files.container_id, files.sandbox, config, self.owner,
                             config.cgroups_enable_cfs or self.cgroups_enable_cfs)
        try:
            record["docker_id"] = self._create(files.container_id, create)
            files.write("config.json", record)
            if config.attach:       # as `docker run -i/-t`: attached before the start, nothing is missed
                hijacked = Hijacked(*self.engine.attach(record["docker_id"], config.stdin, self.detach_keys), config.tty)
                self._attached[files.container_id] = hijacked
            self.engine.start(record["docker_id"])
        except BaseException:
            held = self._attached.pop(files.container_id, None)
            if held is not None:
                held.close()
            try:
                self.engine.remove(self.docker_id(files))
            except CorralError:
                pass        # dockerd cannot remove what it made now: the next recovery removes the orphan
            raise
        return LAUNCHED

    def _create(self, container_id: str, create: dict) -> str:
        image = create["Image"]
        try:
            return self.engine.create(NAME_PREFIX + container_id, create)
        except NotFound:
            pass
        # As Mesos: an image dockerd lacks is pulled, then the create is tried once more.
        # dockerd answers 404 for an image its registry does not have, 500 for a registry it
        # cannot reach: the request's to fix (ImageNotFound), or to try again later (Unavailable).
        try:
            self.engine.pull(image)
        except NotFound as e:
            from corral.provisioner.errors import ImageNotFound
            raise ImageNotFound(f"image {image} is not in dockerd nor in its registry ({e})") from None
        except EngineError as e:
            raise Unavailable(f"image {image} is not in dockerd and could not be pulled ({e})") from None
        return self.engine.create(NAME_PREFIX + container_id, create)

    # -- the end --------------------------------------------------------------------------

    def _wait(self, files: ContainerFiles, timeout: float | None) -> Termination | None:
        try:
            if not self.engine.wait(self.docker_id(files), timeout):
                return None         # still running: the timeout is ours, not a slow dockerd's
        except NotFound:
            pass                    # gone behind our back: the verdict says so
        return self.termination(files)

    def _end(self, files: ContainerFiles) -> End:
        """dockerd's record of the end."""
        info = self.inspect(files)
        if info is None:
            return End(None, message="the docker container is gone from dockerd")
        state = info["State"]
        if state["Running"] or state["Status"] in ("created", "restarting"):
            raise CorralError(f"container {files.container_id} has not ended (docker state: {state['Status']})")
        raw = (state["ExitCode"] & 0xFF) << 8   # docker knows an exit code only; a death by signal N reads 128+N
        oom = Limitation(REASON_CONTAINER_LIMITATION_MEMORY,
                         "Memory limit exceeded: the kernel's OOM killer ended the task")
        return End(raw, error=state.get("Error") or None, limitation=oom if state.get("OOMKilled") else None)

    def _signal(self, files: ContainerFiles, sig: int) -> bool | None:
        try:
            self.engine.kill(self.docker_id(files), sig)
        except NotFound:
            pass            # gone: wait and destroy say so
        except EngineError:
            if self.running(files):
                raise
            return False    # it ended on its own before the signal arrived: its exit status tells
        return None

    def running(self, files: ContainerFiles) -> bool:
        info = self.inspect(files)
        return info is not None and info["State"]["Running"]

    _running = running

    def _release(self, files: ContainerFiles) -> None:
        self.engine.remove(self.docker_id(files))

    def _exec(self, files: ContainerFiles, config, stdio: tuple[int, int, int]):
        from .exec import start
        return start(self, files, config, stdio)

    # -- attach -----------------------------------------------------------------------------

    def attach(self, container_id: str) -> Attachment:
        """The container's streams through dockerd's attach: its output from now on (a foreground
        run's: from its start), and its stdin where it was started with one. CorralError once
        it has ended."""
        files = self.files(container_id)
        config = files.config()
        docker_id = self.docker_id(files)
        hijacked = self._attached.pop(container_id, None)
        if hijacked is None:
            if files.termination() is not None or not self.running(files):
                raise CorralError(f"container {container_id} has ended: nothing to attach to")
            hijacked = Hijacked(*self.engine.attach(docker_id, config.stdin, self.detach_keys), config.tty)
        return Attachment(self.engine, docker_id, hijacked, stdin_once=config.attach)

    # -- the rest of the interface ----------------------------------------------------------

    def update(self, container_id: str, resources: Resources) -> None:
        files = self.files(container_id)
        info = self.inspect(files)
        if info is None:
            raise NoSuchContainer(container_id)
        cfs = self.cgroups_enable_cfs or info["HostConfig"].get("CpuQuota", 0) > 0
        self.engine.update(self.docker_id(files), cgroup_limits(resources, cfs))

    def usage(self, container_id: str) -> dict:
        """docker stats as Mesos ResourceStatistics."""
        files = self.files(container_id)
        info = self.inspect(files)
        if info is None or not info["State"]["Running"]:
            raise CorralError(f"container {container_id} is not running")
        docker_id = self.docker_id(files)
        return resource_statistics(self.engine.stats(docker_id), info["HostConfig"], self.engine.processes(docker_id))

    def _state(self, files: ContainerFiles, ended: bool) -> tuple[str, int | None]:
        info = None if ended else self.inspect(files)
        if info is not None and info["State"]["Running"]:
            return "RUNNING", info["State"]["Pid"]
        if ended or (info is not None and info["State"]["Status"] == "exited"):
            return "EXITED", None
        return "STARTING", None

    def recover(self) -> list[str]:
        """Checkpointed containers stay, running or exited; one whose launch never reached
        dockerd's start goes; corral- containers of ours that no checkpoint knows are removed."""
        known = []
        for container_id in self.containers():
            files = ContainerFiles(self.state_dir, self.work_dir, container_id)
            if files.termination() is None:
                info = self.inspect(files)
                started = info["State"]["Status"] != "created" if info else files.launch_record().get("docker_id")
                if not started:                         # corral died mid-launch
                    self.engine.remove(self.docker_id(files))
                    files.remove(sandbox=False)
                    continue
            known.append(container_id)
        if self.kill_orphans:
            for orphan in self.orphans(known):
                import logging
                logging.getLogger(__name__).info("removing orphan docker container %s", orphan["Names"])
                self.engine.remove(orphan["Id"])
        return known

    def orphans(self, known: list[str]) -> list[dict]:
        """Containers this corral made (by label and name) that the checkpoint does not know."""
        listed = self.engine.containers([LABEL_ID, f"{LABEL_OWNER}={self.owner}"])
        return [c for c in listed
                if c["Labels"][LABEL_ID] not in known and f"/{NAME_PREFIX}{c['Labels'][LABEL_ID]}" in c["Names"]]

    # -- output -----------------------------------------------------------------------------

    def output(self, container_id: str, follow: bool = False):
        """(stream, bytes) pairs of the container's output from its start, stream 1 stdout, 2 stderr,
        read from dockerd, which keeps it (the base reads the sandbox); with follow, until it ends. dockerd's follow can end a moment before it has sent the last
        lines: once it has, one more read without follow gives what it left out."""
        files = self.files(container_id)
        docker_id, tty = self.docker_id(files), files.config().tty
        have: dict[int, int] = {}
        for stream, chunk in self.engine.output(docker_id, follow, tty):
            have[stream] = have.get(stream, 0) + len(chunk)
            yield stream, chunk
        if follow:
            yield from _beyond(self.engine.output(docker_id, False, tty), have)

    def copy_output(self, container_id: str) -> None:
        """Write the container's whole output into the sandbox's stdout and stderr, following it
        until the container ends. Idempotent: each call rewrites both files from the start."""
        files = self.files(container_id)
        config = files.config()
        for name in ("stdout", "stderr"):
            os.close(files.open_in_sandbox(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC))
        # Under a log cap the copy is capped and rotated too, as the Mesos containerizer's files.
        sinks = {stream: RotatingFile(files.sandbox, name, config.log_max_size, config.log_max_files)
                 for stream, name in ((1, "stdout"), (2, "stderr"))}
        try:
            for stream, chunk in self.output(container_id, follow=True):
                sinks.get(stream, sinks[1]).write(chunk)
        finally:
            for sink in sinks.values():
                sink.close()


def _beyond(pairs, have: dict):
    """The (stream, bytes) pairs past the first have[stream] bytes of each stream."""
    for stream, chunk in pairs:
        skip = min(have.get(stream, 0), len(chunk))
        if skip:
            have[stream] -= skip
            chunk = chunk[skip:]
        if chunk:
            yield stream, chunk


def resource_statistics(stats: dict, host_config: dict, processes: int) -> dict:
    """docker stats (cgroup v1 or v2) and the container's HostConfig as ResourceStatistics fields."""
    cpu = stats.get("cpu_stats", {})
    usage = cpu.get("cpu_usage", {})
    throttling = cpu.get("throttling_data", {})
    memory = stats.get("memory_stats", {})
    mem = memory.get("stats", {})
    quota, period = host_config.get("CpuQuota") or 0, host_config.get("CpuPeriod") or CFS_PERIOD_US
    shares = host_config.get("CpuShares") or CPU_SHARES_PER_CPU
    return {
        "timestamp": time.time(),
        "processes": processes,
        "threads": stats.get("pids_stats", {}).get("current", 0),     # pids.current counts tasks
        "cpus_user_time_secs": usage.get("usage_in_usermode", 0) / 1e9,
        "cpus_system_time_secs": usage.get("usage_in_kernelmode", 0) / 1e9,
        "cpus_limit": quota / period if quota > 0 else shares / CPU_SHARES_PER_CPU,
        "cpus_nr_periods": throttling.get("periods", 0),
        "cpus_nr_throttled": throttling.get("throttled_periods", 0),
        "cpus_throttled_time_secs": throttling.get("throttled_time", 0) / 1e9,
        "mem_total_bytes": memory.get("usage", 0),
        "mem_rss_bytes": mem.get("rss", mem.get("anon", 0)),
        "mem_cache_bytes": mem.get("cache", mem.get("file", 0)),
        "mem_limit_bytes": host_config.get("Memory") or memory.get("limit", 0),
    }
