"""The CLI's Docker and external containerizers, and its composing order (--containerizers).

Kept apart from cli.py, which knows only the Mesos containerizer's fast path: this module is
imported only when another containerizer is configured. The CLI drives the blocking (Sync*)
containerizers directly, as it does the Mesos one: no asyncio, no threads.
"""

from __future__ import annotations

from corral.types import NOT_SUPPORTED, InvalidInput, NoSuchContainer

NAMES = ("mesos", "docker", "external")


def names(args) -> list[str]:
    """The containerizers in the user's order: --containerizer NAME alone, else --containerizers."""
    chosen = getattr(args, "containerizer", None)
    listed = [chosen] if chosen else [n.strip() for n in args.containerizers.split(",") if n.strip()]
    unknown = [n for n in listed if n not in NAMES]
    if unknown or not listed:
        raise InvalidInput(f"unknown containerizer {unknown[0] if unknown else '(none)'}: "
                           f"choose from {', '.join(NAMES)}")
    return listed


def make(args, name: str, only: bool):
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
                                       kill_orphans=args.docker_kill_orphans, only=only, sdk=False)
    if not args.external_containerizer_path:
        raise InvalidInput("the external containerizer needs --external-containerizer-path")
    from corral.containerizers.external import SyncExternalContainerizer
    return SyncExternalContainerizer(args.work_dir, args.runtime_dir, args.external_containerizer_path,
                                     timeout=args.external_containerizer_timeout)


def all_of(args) -> list:
    listed = names(args)
    return [make(args, name, only=len(listed) == 1) for name in listed]


def owner(args, container_id: str):
    """The containerizer that has the container (the first, for ids nobody has: it says so)."""
    containerizers = all_of(args)
    for containerizer in containerizers:
        if container_id in containerizer.containers():
            return containerizer
    raise NoSuchContainer(container_id)


def launch(args, container_id: str, config):
    """Ask each in the user's order; the first that does not answer NOT_SUPPORTED has it."""
    for containerizer in all_of(args):
        if containerizer.launch(container_id, config) != NOT_SUPPORTED:
            return containerizer
    hint = "" if config.image else " (docker runs images: add --image REF)"
    raise InvalidInput(f"no containerizer of {', '.join(names(args))} takes this container{hint}")
