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
  a corral restart; destroy removes them.

State: <runtime-dir>/docker/containers/<id>/ holds config.json (with the docker id),
kill.json and termination.json, in the layout every containerizer shares (containerizers/state.py).
Every SDK call blocks: SyncDockerContainerizer is used as is by the CLI and on threads by
DockerContainerizer, the asyncio face, which also copies each container's output into its
sandbox's stdout and stderr, as Mesos's docker executor does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time

from corral.types import (LAUNCHED, NOT_SUPPORTED,
                          REASON_CONTAINER_LIMITATION_MEMORY, TASK_KILLED, TASK_LOST, ContainerConfig, ContainerExists,
                          CorralError, InvalidInput, Limitation, NoSuchContainer, Resources, Termination, verdict)
from isolators.cgroups.cpu import CFS_PERIOD_US, CPU_SHARES_PER_CPU, quota_for, shares_for
from isolators.filesystem import parse_volume

from .state import ContainerFiles, container_ids
from .threaded import ThreadedContainerizer

log = logging.getLogger(__name__)

DEFAULT_SOCKET = "unix:///var/run/docker.sock"
# Pinned, so that making a client costs no round trip: 1.41 is dockerd 20.10 (Debian 12's), and
# later dockerds still speak it.
API_VERSION = "1.41"
NAME_PREFIX = "corral-"
LABEL_ID = "io.corral.container-id"
LABEL_OWNER = "io.corral.runtime-dir"      # which corral made it: two corrals never touch each other's
SANDBOX = "/mnt/mesos/sandbox"
STOP_TIMEOUT = 10.0


def default_socket() -> str:
    """--docker-socket's default: DOCKER_HOST, else the standard socket (never a CLI context)."""
    return os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET


class DockerUnavailable(CorralError):
    """dockerd is down, unreachable or too slow: the container's state is unknown, not changed."""


class SyncDockerContainerizer:
    name = "docker"

    def __init__(self, work_dir: str, runtime_dir: str, socket: str | None = None,
                 cgroups_enable_cfs: bool = False, kill_orphans: bool = True, only: bool = False,
                 timeout: float = 30.0):
        self.work_dir = work_dir
        self.state_dir = os.path.join(runtime_dir, "docker")
        self.owner = os.path.realpath(runtime_dir)
        self.socket = socket or default_socket()
        self.cgroups_enable_cfs = cgroups_enable_cfs
        self.kill_orphans = kill_orphans
        self.only = only
        self.timeout = timeout
        self._client = None

    # -- dockerd ----------------------------------------------------------------------------

    @property
    def api(self):
        """The SDK's low-level client, made on first use: importing the SDK costs ~0.2 s."""
        if self._client is None:
            import docker
            with self.errors():
                self._client = docker.APIClient(base_url=self.socket, version=API_VERSION, timeout=self.timeout)
        return self._client

    @contextlib.contextmanager
    def errors(self):
        """dockerd's failures as one-line CorralErrors; 'not found' stays docker.errors.NotFound."""
        import docker.errors
        import requests.exceptions as rex
        try:
            yield
        except docker.errors.NotFound:
            raise
        except docker.errors.APIError as e:
            raise CorralError(f"dockerd at {self.socket}: {e.explanation or e}") from None
        except docker.errors.DockerException as e:
            raise CorralError(f"docker: {e}") from None
        except (rex.ConnectionError, rex.Timeout, rex.ChunkedEncodingError) as e:
            if _timed_out(e):
                raise DockerUnavailable(f"dockerd at {self.socket} did not answer within {self.timeout:g}s") from None
            raise DockerUnavailable(f"dockerd at {self.socket} is not reachable ({_root_cause(e)})") from None

    def files(self, container_id: str) -> ContainerFiles:
        files = ContainerFiles(self.state_dir, self.work_dir, container_id)
        if not files.exists():
            raise NoSuchContainer(container_id)
        return files

    @staticmethod
    def docker_id(files: ContainerFiles) -> str:
        return files.launch_record().get("docker_id") or NAME_PREFIX + files.container_id

    def inspect(self, files: ContainerFiles) -> dict | None:
        """dockerd's view of the container; None when dockerd no longer has it."""
        import docker.errors
        try:
            with self.errors():
                return self.api.inspect_container(self.docker_id(files))
        except docker.errors.NotFound:
            return None

    # -- launch -----------------------------------------------------------------------------

    def supports(self, config: ContainerConfig) -> bool:
        docker_image = bool(config.image) and config.image.get("type", "DOCKER") == "DOCKER" and not config.rootfs
        asked = config.containerizer == self.name or (config.containerizer is None and self.only)
        return docker_image and asked

    def launch(self, container_id: str, config: ContainerConfig) -> str:
        if not self.supports(config):
            return NOT_SUPPORTED
        files = ContainerFiles(self.state_dir, self.work_dir, container_id)
        try:
            files.create()
        except FileExistsError:
            raise ContainerExists(container_id) from None
        try:
            host_config = self._host_config(files, config)
        except BaseException:
            files.remove(sandbox=False)
            raise
        record = {"config": config.to_dict(), "created": time.time(), "sandbox": files.sandbox, "docker_id": None}
        try:
            files.write("config.json", record)
            record["docker_id"] = self._create(container_id, files, config, host_config)
            files.write("config.json", record)
            with self.errors():
                self.api.start(record["docker_id"])
        except BaseException:
            # If dockerd cannot remove what it made now, the next recovery removes it as an orphan.
            with contextlib.suppress(CorralError):
                self._remove_container(files)
            files.remove(sandbox=False)
            raise
        return LAUNCHED

    def _create(self, container_id: str, files: ContainerFiles, config: ContainerConfig, host_config) -> str:
        import docker.errors
        image = config.image["name"]
        kwargs = dict(
            # The command replaces the image's Entrypoint and Cmd (as Mesos does); none: the image's own.
            image=image, entrypoint=config.argv[:1] or None, command=config.argv[1:] if config.argv else None,
            name=NAME_PREFIX + container_id,
            environment={**config.env, "MESOS_SANDBOX": SANDBOX, "MESOS_CONTAINER_NAME": NAME_PREFIX + container_id},
            working_dir=os.path.join(SANDBOX, config.workdir or ""), user=config.user, hostname=config.hostname,
            labels={LABEL_ID: container_id, LABEL_OWNER: self.owner}, host_config=host_config,
            ports=[_port(spec)[1:] for spec in config.ports] or None)
        with self.errors():
            try:
                return self.api.create_container(**kwargs)["Id"]
            except docker.errors.ImageNotFound:
                pass
            # As Mesos: an image dockerd lacks is pulled, then the create is tried once more.
            try:
                self.api.pull(image)
            except docker.errors.APIError as e:
                raise CorralError(f"image {image} is not in dockerd at {self.socket} and could not be pulled: "
                                  f"{e.explanation or e}") from None
            return self.api.create_container(**kwargs)["Id"]

    def _host_config(self, files: ContainerFiles, config: ContainerConfig) -> dict:
        network = config.network or "host"
        if config.ports and network == "host":
            raise InvalidInput("ports are published only off the host network: give a network such as bridge")
        binds = [f"{files.sandbox}:{SANDBOX}:rw"] + [_volume(spec, files.sandbox) for spec in config.volumes]
        ports = {}
        for spec in config.ports:
            host_port, container_port, proto = _port(spec)
            ports[f"{container_port}/{proto}"] = host_port
        limits = _limits(config.resources, config.cgroups_enable_cfs or self.cgroups_enable_cfs)
        # init: docker-init is pid 1 and forwards signals, so a task dies of SIGTERM as it would on
        # a host (as pid 1 it would ignore every signal it has no handler for), as in corral's own init.
        return self.api.create_host_config(binds=binds, network_mode=network, port_bindings=ports or None,
                                           init=True, **limits)

    # -- the end --------------------------------------------------------------------------

    def wait(self, container_id: str, timeout: float | None = None) -> Termination | None:
        """Block until the container ends (None if `timeout` seconds pass first)."""
        import docker.errors
        import requests.exceptions as rex
        files = self.files(container_id)
        known = files.termination()
        if known is not None:
            return known
        try:
            with self.errors():
                try:
                    self.api.wait(self.docker_id(files), timeout=timeout)
                except (rex.ConnectionError, rex.Timeout) as e:
                    if timeout is None or not _timed_out(e):
                        raise
                    return None         # still running: the timeout is ours, not a slow dockerd's
        except docker.errors.NotFound:
            pass            # gone behind our back: termination() says so
        return self.termination(files)

    def termination(self, files: ContainerFiles) -> Termination:
        """The verdict on an ended container, from dockerd's record of it; written once."""
        known = files.termination()
        if known is not None:
            return known
        cid = files.container_id
        info = self.inspect(files)
        if info is None:
            termination = Termination(cid, None, TASK_LOST, None, "the docker container is gone from dockerd")
        else:
            state = info["State"]
            if state["Running"] or state["Status"] in ("created", "restarting"):
                raise CorralError(f"container {cid} has not ended (docker state: {state['Status']})")
            code = state["ExitCode"]
            raw = (code & 0xFF) << 8        # docker knows an exit code only; a death by signal N reads 128+N
            oom = Limitation(REASON_CONTAINER_LIMITATION_MEMORY,
                             "Memory limit exceeded: the kernel's OOM killer ended the task")
            termination = verdict(cid, raw, state.get("Error") or None, oom if state.get("OOMKilled") else None,
                                  (files.kill_record() or {}).get("signal"))
        files.write("termination.json", termination.to_dict())
        return termination

    def kill(self, container_id: str, sig: int = signal.SIGTERM) -> None:
        import docker.errors
        files = self.files(container_id)
        if files.termination() is not None:
            return
        files.record_kill(sig)
        try:
            with self.errors():
                self.api.kill(self.docker_id(files), sig)
        except docker.errors.NotFound:
            pass            # gone: wait and destroy say so
        except DockerUnavailable:
            raise
        except CorralError:
            if self.running(files):
                raise
            # It ended on its own before the signal arrived: nothing to do.

    def running(self, files: ContainerFiles) -> bool:
        info = self.inspect(files)
        return info is not None and info["State"]["Running"]

    def destroy(self, container_id: str, remove_sandbox: bool = False) -> Termination:
        """SIGKILL the container, read its verdict, remove it from dockerd and forget it."""
        files = self.files(container_id)
        if files.termination() is None and self.running(files):
            self.kill(container_id, signal.SIGKILL)
            if self.wait(container_id, timeout=STOP_TIMEOUT) is None:
                files.write("termination.json", Termination(
                    container_id, None, TASK_KILLED, None,
                    f"still running {STOP_TIMEOUT:g}s after SIGKILL; removed by force").to_dict())
        termination = self.termination(files)
        self._remove_container(files)
        files.remove(sandbox=remove_sandbox)
        return termination

    def _remove_container(self, files: ContainerFiles) -> None:
        import docker.errors
        with self.errors(), contextlib.suppress(docker.errors.NotFound):
            self.api.remove_container(self.docker_id(files), v=True, force=True)

    # -- the rest of the interface ----------------------------------------------------------

    def update(self, container_id: str, resources: Resources) -> None:
        files = self.files(container_id)
        info = self.inspect(files)
        if info is None:
            raise NoSuchContainer(container_id)
        cfs = self.cgroups_enable_cfs or info["HostConfig"].get("CpuQuota", 0) > 0
        limits = _limits(resources, cfs)
        with self.errors():
            self.api.update_container(self.docker_id(files), **limits)

    def usage(self, container_id: str) -> dict:
        """docker stats as Mesos ResourceStatistics."""
        files = self.files(container_id)
        info = self.inspect(files)
        if info is None or not info["State"]["Running"]:
            raise CorralError(f"container {container_id} is not running")
        with self.errors():
            stats = self.api.stats(self.docker_id(files), stream=False, one_shot=True)
            processes = len(self.api.top(self.docker_id(files), ps_args="-o pid")["Processes"] or [])
        return resource_statistics(stats, info["HostConfig"], processes)

    def status(self, container_id: str) -> dict:
        files = self.files(container_id)
        record = files.launch_record()
        termination = files.termination()
        info = self.inspect(files) if termination is None else None
        running = bool(info and info["State"]["Running"])
        if termination is None and not running and info is not None and info["State"]["Status"] == "exited":
            termination = self.termination(files)
        return {
            "container_id": container_id,
            "containerizer": self.name,
            "state": "RUNNING" if running else ("EXITED" if termination else "STARTING"),
            "pid": info["State"]["Pid"] if running else None,
            "created": record.get("created"),
            "sandbox": record.get("sandbox"),
            "config": record["config"],
            "docker_id": record.get("docker_id"),
            "termination": termination.to_dict() if termination else None,
        }

    def containers(self) -> list[str]:
        return container_ids(self.state_dir)

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
                    self._remove_container(files)
                    files.remove(sandbox=False)
                    continue
            known.append(container_id)
        if self.kill_orphans:
            for orphan in self.orphans(known):
                log.info("removing orphan docker container %s", orphan["Names"])
                with self.errors():
                    self.api.remove_container(orphan["Id"], v=True, force=True)
        return known

    def orphans(self, known: list[str]) -> list[dict]:
        """Containers this corral made (by label and name) that the checkpoint does not know."""
        with self.errors():
            listed = self.api.containers(all=True, filters={"label": [LABEL_ID, f"{LABEL_OWNER}={self.owner}"]})
        return [c for c in listed
                if c["Labels"][LABEL_ID] not in known and f"/{NAME_PREFIX}{c['Labels'][LABEL_ID]}" in c["Names"]]

    # -- output -----------------------------------------------------------------------------

    def output(self, container_id: str, follow: bool = False):
        """(stream, bytes) pairs of the container's output from its start, stream 1 stdout, 2 stderr;
        with follow, until it ends. (The SDK's logs() merges the streams; its attach() demuxes them
        but waits forever on a container that has stopped.)"""
        from docker.errors import create_api_error_from_http_exception
        from requests.exceptions import HTTPError
        files = self.files(container_id)
        url = f"{self.api.base_url}/v{self.api.api_version}/containers/{self.docker_id(files)}/logs"
        with self.errors():
            response = self.api.get(url, params={"stdout": 1, "stderr": 1, "follow": int(follow)},
                                    stream=True, timeout=None if follow else self.timeout)
            try:
                response.raise_for_status()
            except HTTPError as e:
                raise create_api_error_from_http_exception(e) from None
            with response:
                while len(header := response.raw.read(8)) == 8:
                    yield header[0], response.raw.read(int.from_bytes(header[4:], "big"))

    def copy_output(self, container_id: str) -> None:
        """Write the container's whole output into the sandbox's stdout and stderr, following it
        until the container ends. Idempotent: each call rewrites both files from the start."""
        files = self.files(container_id)
        with open(files.stdout, "wb") as out, open(files.stderr, "wb") as err:
            for stream, chunk in self.output(container_id, follow=True):
                sink = err if stream == 2 else out
                sink.write(chunk)
                sink.flush()


class DockerContainerizer(ThreadedContainerizer):
    """The asyncio face: every SDK call on a thread; dockerd outages are waited out."""

    RETRY_INTERVAL = 1.0

    def __init__(self, *args, **kwargs):
        super().__init__(SyncDockerContainerizer(*args, **kwargs))
        self._copies: dict = {}            # container id -> the asyncio.Task copying its output

    async def launch(self, container_id: str, config: ContainerConfig) -> str:
        result = await super().launch(container_id, config)
        if result == LAUNCHED:
            self._copy(container_id)
        return result

    async def recover(self) -> list[str]:
        known = await super().recover()
        for container_id in known:
            self._copy(container_id)
        return known

    async def wait(self, container_id: str) -> Termination:
        """As the SDK's wait, but a dockerd that is down or restarting is waited for, then re-read."""
        import asyncio
        while True:
            try:
                return await self.call_long(self.sync.wait, container_id)
            except DockerUnavailable as e:
                log.warning("waiting on container %s: %s; retrying", container_id, e)
                await asyncio.sleep(self.RETRY_INTERVAL)

    async def destroy(self, container_id: str, remove_sandbox: bool = False) -> Termination:
        termination = await super().destroy(container_id, remove_sandbox)
        copy = self._copies.pop(container_id, None)
        if copy is not None:
            copy.cancel()
        return termination

    def close(self) -> None:
        for copy in self._copies.values():
            copy.cancel()
        super().close()

    def _copy(self, container_id: str) -> None:
        """Keep the sandbox's stdout and stderr current, as long as the container runs."""
        import asyncio

        async def copy():
            while True:
                try:
                    await self.call_long(self.sync.copy_output, container_id)
                    if not await self.call(self.sync.running, self.sync.files(container_id)):
                        return
                except NoSuchContainer:
                    return
                except CorralError as e:
                    log.warning("copying the output of container %s: %s", container_id, e)
                await asyncio.sleep(self.RETRY_INTERVAL)     # a dockerd restart ended the stream early
        self._copies[container_id] = asyncio.get_running_loop().create_task(copy())


def _limits(resources: Resources, cfs: bool) -> dict:
    """Mesos's mapping of cpus and mem onto docker's cgroup settings."""
    limits = {}
    if resources.cpus is not None:
        limits["cpu_shares"] = shares_for(resources.cpus)
        if cfs:
            limits.update(cpu_period=CFS_PERIOD_US, cpu_quota=quota_for(resources.cpus))
    if resources.mem_mb is not None:
        limits["mem_limit"] = limits["memswap_limit"] = int(resources.mem_mb * 1024 * 1024)
    return limits


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


def _volume(spec: str, sandbox: str) -> str:
    """HOST:CONTAINER[:ro|rw] as a docker bind, read as the Mesos containerizer reads it."""
    mount = parse_volume(spec, sandbox)
    return f"{mount.source}:{mount.target}:{'ro' if mount.readonly else 'rw'}"


def _port(spec: str) -> tuple[int, int, str]:
    """'31000:80' or '31000:53/udp' -> (31000, 80, 'tcp')."""
    mapping, _, proto = spec.partition("/")
    host, _, container = mapping.partition(":")
    proto = proto or "tcp"
    if not (host.isdigit() and container.isdigit() and proto in ("tcp", "udp")
            and 0 < int(host) < 65536 and 0 < int(container) < 65536):
        raise InvalidInput(f"invalid port mapping {spec!r}: use HOST_PORT:CONTAINER_PORT[/tcp|udp]")
    return int(host), int(container), proto


def _causes(error: BaseException):
    """An error and the errors that requests and urllib3 wrapped inside it, outermost first."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        inner = getattr(error, "reason", None)
        if not isinstance(inner, BaseException):
            inner = next((a for a in error.args if isinstance(a, BaseException)), None)
        error = inner


def _timed_out(error: BaseException) -> bool:
    import requests.exceptions as rex
    import urllib3.exceptions
    return any(isinstance(e, (TimeoutError, rex.Timeout, urllib3.exceptions.TimeoutError)) for e in _causes(error))


def _root_cause(error: BaseException) -> str:
    """The innermost reason: 'Connection refused', not a chain of reprs."""
    *_, error = _causes(error)
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error).strip() or type(error).__name__
