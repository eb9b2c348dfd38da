"""The CLI's one factory of containerizers: which to launch with (--containerizers, in order, or
--containerizer alone) and which owns an existing container (the one whose files hold its id).

The CLI drives the blocking (Sync*) containerizers directly: no asyncio, no threads. Each is
imported only when it is used: a cold `corral run` of the Mesos containerizer pays for no other.
"""

from __future__ import annotations

import os

from corral.types import NOT_SUPPORTED, InvalidInput, NoSuchContainer

from .options import CONTAINERIZERS


def names(args) -> list[str]:
    """The containerizers in the user's order: --containerizer NAME alone, else --containerizers."""
    chosen = getattr(args, "containerizer", None)
    listed = [chosen] if chosen else [n.strip() for n in args.containerizers.split(",") if n.strip()]
    unknown = [n for n in listed if n not in CONTAINERIZERS]
    if unknown or not listed:
        raise InvalidInput(f"unknown containerizer {unknown[0] if unknown else '(none)'}: "
                           f"choose from {', '.join(CONTAINERIZERS)}")
    return listed


def make(args, name: str, only: bool = True, listing: bool = False):
    """The containerizer `name`, set up from the command's options. `only`: it is the one
    configured (the docker containerizer then takes an image container nobody named it for).
    `listing`: only its containers' files are read (the external one needs no program for that)."""
    if name == "mesos":
        from corral.containerizers.mesos.sync import SyncMesosContainerizer
        provisioner = None
        if getattr(args, "image", None):
            from corral.provisioner.cli import provisioner as make_provisioner
            provisioner = make_provisioner(args)
        return SyncMesosContainerizer(args.work_dir, args.runtime_dir, args.cgroups_root, provisioner=provisioner)
    if name == "docker":
        from corral.containerizers.docker import SyncDockerContainerizer
        # sdk=False: plain HTTP on dockerd's socket, as importing the SDK costs more than the run.
        return SyncDockerContainerizer(args.work_dir, args.runtime_dir, socket=args.docker_socket,
                                       kill_orphans=args.docker_kill_orphans, only=only, sdk=False,
                                       detach_keys=getattr(args, "detach_keys", None))
    if not args.external_containerizer_path and not listing:
        raise InvalidInput("the external containerizer needs --external-containerizer-path")
    from corral.containerizers.external import SyncExternalContainerizer
    return SyncExternalContainerizer(args.work_dir, args.runtime_dir, args.external_containerizer_path,
                                     timeout=args.external_containerizer_timeout)


def launch(args, container_id: str, config):
    """Ask each in the user's order; the first that does not answer NOT_SUPPORTED has it."""
    listed = names(args)
    for name in listed:
        containerizer = make(args, name, only=len(listed) == 1)
        if containerizer.launch(container_id, config) != NOT_SUPPORTED:
            return containerizer
    hint = "" if config.image else " (docker runs images: add --image REF)"
    raise InvalidInput(f"no containerizer of {', '.join(listed)} takes this container{hint}")


def owner(args, container_id: str):
    """The containerizer whose files hold the container (--containerizer, when given, alone)."""
    from corral.containerizers.state import state_dir
    from corral.containerizers.state import ContainerFiles
    candidates = [args.containerizer] if getattr(args, "containerizer", None) else CONTAINERIZERS
    for name in candidates:
        if ContainerFiles(state_dir(args.runtime_dir, name), args.work_dir, container_id).exists():
            if name == "external" and not args.external_containerizer_path:
                raise InvalidInput(f"container {container_id} is the external containerizer's: "
                                   "give --external-containerizer-path")
            return make(args, name)
    raise NoSuchContainer(container_id)


def present(args) -> list:
    """Every containerizer that has containers on this host (for ps)."""
    from corral.containerizers.state import state_dir
    found = []
    for name in CONTAINERIZERS:
        if os.path.isdir(os.path.join(state_dir(args.runtime_dir, name), "containers")):
            found.append(make(args, name, listing=True))
    return found
