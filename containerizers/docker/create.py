"""What the docker containerizer asks dockerd to create: a ContainerConfig translated to the Engine
API's create body (POST /containers/create), as Mesos's docker containerizer maps it. Resources
map to cgroup settings (cpu shares, a CFS quota, a memory limit with no swap), the confinement
requests to HostConfig's fields, the sandbox to a bind mount, ports to published bindings.
"""

from __future__ import annotations

import os

from corral.cpu import CFS_PERIOD_US, quota_for, shares_for
from corral.types import ContainerConfig, InvalidInput, Resources

NAME_PREFIX = "corral-"
LABEL_ID = "io.corral.container-id"
LABEL_OWNER = "io.corral.runtime-dir"      # which corral made it: two corrals never touch each other's
SANDBOX = "/mnt/mesos/sandbox"


def create_body(container_id: str, sandbox: str, config: ContainerConfig, owner: str, cfs: bool) -> dict:
    """The Engine API's container config (POST /containers/create) for a ContainerConfig: `sandbox`
    is bind-mounted at SANDBOX, `owner` (this corral's runtime dir) labels it, `cfs` asks for a
    CFS quota."""
    network = config.network or "host"
    if config.ports and network == "host":
        raise InvalidInput("ports are published only off the host network: give a network such as bridge")
    binds = [f"{sandbox}:{SANDBOX}:rw"] + [_volume(spec, sandbox) for spec in config.volumes]
    published = {}
    for spec in config.ports:
        host_port, container_port, proto = _port(spec)
        published[f"{container_port}/{proto}"] = [{"HostIp": "", "HostPort": str(host_port)}]
    name = NAME_PREFIX + container_id
    env = {**config.env, "MESOS_SANDBOX": SANDBOX, "MESOS_CONTAINER_NAME": name}
    create = {
        "Image": config.image["name"],
        # The command replaces the image's Entrypoint and Cmd (as Mesos does); none: the image's own.
        "Entrypoint": config.argv[:1] or None, "Cmd": config.argv[1:] if config.argv else None,
        "Env": [f"{key}={value}" for key, value in env.items()],
        "WorkingDir": os.path.join(SANDBOX, config.workdir or ""),
        "Labels": {LABEL_ID: container_id, LABEL_OWNER: owner},
        "HostConfig": {
            "Binds": binds, "NetworkMode": network,
            # init: docker-init is pid 1 and forwards signals, so a task dies of SIGTERM as it would
            # on a host (as pid 1 it would ignore every signal it has no handler for), as in
            # corral's own init.
            "Init": True,
            **cgroup_limits(config.resources, cfs),
            **confinement(config), **gpu_requests(config)},
    }
    if config.log_max_size:
        # dockerd's json-file driver rotates as corral's switchboard does (its logs endpoint
        # reads across the files it keeps).
        create["HostConfig"]["LogConfig"] = {"Type": "json-file", "Config": {
            "max-size": str(config.log_max_size), "max-file": str(config.log_max_files or 1)}}
    if config.stdin:
        # As `docker run -i`: a foreground run's end of input is the task's (StdinOnce); a
        # detached container's stdin stays open across the clients that attach to it.
        create.update(OpenStdin=True, AttachStdin=config.attach, StdinOnce=config.attach)
    if config.tty:
        create["Tty"] = True
    if config.user:
        create["User"] = config.user
    if config.hostname:
        create["Hostname"] = config.hostname
    if published:
        create["ExposedPorts"] = {port: {} for port in published}
        create["HostConfig"]["PortBindings"] = published
    return create


def cgroup_limits(resources: Resources, cfs: bool) -> dict:
    """Mesos's mapping of cpus and mem onto docker's cgroup settings."""
    limits = {}
    if resources.cpus is not None:
        limits["CpuShares"] = shares_for(resources.cpus)
        if cfs:
            limits.update(CpuPeriod=CFS_PERIOD_US, CpuQuota=quota_for(resources.cpus))
    if resources.mem_mb is not None:
        limits["Memory"] = limits["MemorySwap"] = int(resources.mem_mb * 1024 * 1024)
    return limits


def confinement(config: ContainerConfig) -> dict:
    """The container's confinement requests as the Engine API's HostConfig fields: dockerd applies
    them (its defaults are the ones corral's Mesos containerizer copies)."""
    from corral.isolators.capabilities import names
    from corral.isolators.devices import parse_device
    from corral.isolators.rlimits import TYPES, UNLIMITED, parse_rlimits
    host = {}
    if config.privileged:
        host["Privileged"] = True
    cap_add, cap_drop = list(config.cap_add), list(config.cap_drop)
    effective = config.effective_capabilities
    if effective is None:
        effective = config.bounding_capabilities
    if effective is not None:       # Mesos's sets: docker has only add and drop, from its default
        cap_drop, cap_add = ["ALL"], sorted(names(effective, "effective_capabilities")) + cap_add
    if cap_add:
        host["CapAdd"] = cap_add
    if cap_drop:
        host["CapDrop"] = cap_drop
    if config.seccomp_profile == "unconfined":
        host["SecurityOpt"] = ["seccomp=unconfined"]
    elif config.seccomp_profile is not None:
        if not os.path.isabs(config.seccomp_profile):
            raise InvalidInput("the docker containerizer takes a seccomp profile file, not a profile name")
        with open(config.seccomp_profile) as f:       # the Engine API wants the profile itself
            host["SecurityOpt"] = [f"seccomp={f.read()}"]
    if config.pids_limit is not None:
        host["PidsLimit"] = config.pids_limit
    if config.rlimits:
        names_of = {number: name for name, number in TYPES.items()}
        host["Ulimits"] = [{"Name": names_of[number][len("RLMT_"):].lower(),
                            "Soft": -1 if soft == UNLIMITED else soft, "Hard": -1 if hard == UNLIMITED else hard}
                           for number, soft, hard in parse_rlimits(config.rlimits)]
    if config.devices:
        host["Devices"] = [{"PathOnHost": d.host, "PathInContainer": d.path, "CgroupPermissions": d.access}
                           for d in map(parse_device, config.devices)]
    return host


def gpu_requests(config: ContainerConfig) -> dict:
    """The GPUs the agent gave the container (gpu/nvidia's indices), as a DeviceRequest that
    dockerd (API 1.40, Docker 19.03 on) hands to NVIDIA's container toolkit."""
    indices = (config.resources.custom or {}).get("gpus")
    if not indices:
        return {}
    return {"DeviceRequests": [{"Driver": "nvidia", "DeviceIDs": [str(i) for i in indices],
                                "Capabilities": [["gpu"]]}]}


def _volume(spec: str, sandbox: str) -> str:
    """HOST:CONTAINER[:ro|rw] as a docker bind, read as the Mesos containerizer reads it."""
    from corral.isolators.filesystem import parse_volume
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
