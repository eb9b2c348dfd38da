"""The agent's containerizer, made from its flags: the one --containerizers names, or a
ComposingContainerizer over them in the user's order, with the Mesos containerizer's arguments
(isolation, confinement, ports, devices, images) taken from the agent's flags.
"""

from __future__ import annotations

from corral.containerizers import Containerizer
from corral.containerizers.composing import ComposingContainerizer
from corral.containerizers.mesos.containerizer import MesosContainerizer

from .resources import Resources


def make_containerizer(flags, total: Resources, lock: int | None = None) -> Containerizer:
    """The agent's containerizer: the one --containerizers names, or a ComposingContainerizer over
    them in the user's order. Call it while the process has one thread: the Mesos containerizer
    launches through a launch server that it forks (containerizers/mesos/forkserver.py), so it is
    made first; the docker and external ones start their threads only when first used. `lock`:
    the agent's lock (Checkpoint.lock), which the launch server holds too."""
    made: dict[str, Containerizer] = {}
    if "mesos" in flags.containerizers:
        made["mesos"] = MesosContainerizer(**containerizer_args(flags, total), launch_server=True,
                                           hold=() if lock is None else (lock,))
    if "docker" in flags.containerizers:
        from corral.containerizers.docker import DockerContainerizer
        # only=False: the docker containerizer takes only the containers that ask for it (a
        # DOCKER ContainerInfo), as mesos-agent's does, however few containerizers there are.
        made["docker"] = DockerContainerizer(flags.work_dir, flags.runtime_dir, socket=flags.docker_socket,
                                             cgroups_enable_cfs=flags.cgroups_enable_cfs,
                                             kill_orphans=flags.docker_kill_orphans, only=False)
    if "external" in flags.containerizers:
        from corral.containerizers.external import ExternalContainerizer
        made["external"] = ExternalContainerizer(flags.work_dir, flags.runtime_dir, flags.external_containerizer_path,
                                                 timeout=flags.external_containerizer_timeout)
    ordered = [made[name] for name in flags.containerizers]
    return ordered[0] if len(ordered) == 1 else ComposingContainerizer(ordered)


def containerizer_args(flags, total: Resources) -> dict:
    """SyncMesosContainerizer's arguments from the agent's flags."""
    ports = total.get("ports")
    provisioner = None
    if flags.image_providers:
        from corral.provisioner import Provisioner, ProvisionerFlags
        provisioner = Provisioner(flags.work_dir, ProvisionerFlags(docker_registry=flags.docker_registry,
                                                                   max_layer_size=flags.max_layer_size))
    return dict(work_dir=flags.work_dir, runtime_dir=flags.runtime_dir, cgroups_root=flags.cgroups_root,
                nvidia_gpu_devices=flags.nvidia_gpu_devices, nvidia_volumes=flags.nvidia_volumes,
                provisioner=provisioner,
                isolation=flags.isolation, cgroups_enable_cfs=flags.cgroups_enable_cfs,
                container_ports_isolated_range=ports.to_list() if ports else [],
                enforce_container_ports=flags.enforce_container_ports,
                container_ports_watch_interval=flags.container_ports_watch_interval,
                effective_capabilities=flags.effective_capabilities,
                bounding_capabilities=flags.bounding_capabilities,
                seccomp_config_dir=flags.seccomp_config_dir, seccomp_profile_name=flags.seccomp_profile_name,
                allowed_devices=flags.allowed_devices or [], cgroups_pids_limit=flags.cgroups_pids_limit)
