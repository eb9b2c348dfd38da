"""The CLI's Docker and external containerizers, and its composing order (--containerizers).

Kept apart from cli.py, which knows only the Mesos containerizer's fast path: this module is
imported only when another containerizer is configured. The CLI drives the blocking (Sync*)
containerizers directly, as it does the Mesos one: no asyncio, no threads.
"""

from __future__ import annotations

import os
import signal
import sys

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
        from containerizers.mesos.sync import SyncMesosContainerizer
        provisioner = None
        if getattr(args, "image", None):
            from provisioner.cli import provisioner as make_provisioner
            provisioner = make_provisioner(args)
        return SyncMesosContainerizer(args.work_dir, args.runtime_dir, args.cgroups_root, provisioner=provisioner)
    if name == "docker":
        from containerizers.docker import SyncDockerContainerizer
        # sdk=False: plain HTTP on dockerd's socket, as importing the SDK costs more than the run.
        return SyncDockerContainerizer(args.work_dir, args.runtime_dir, socket=args.docker_socket,
                                       kill_orphans=args.docker_kill_orphans, only=only, sdk=False)
    if not args.external_containerizer_path:
        raise InvalidInput("the external containerizer needs --external-containerizer-path")
    from containerizers.external import SyncExternalContainerizer
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


def docker_logs(containerizer, container_id: str, stderr: bool, follow: bool) -> int:
    """dockerd keeps a docker container's output (the CLI copies none into the sandbox)."""
    for stream, chunk in containerizer.output(container_id, follow=follow):
        if (stream == 2) == stderr:
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
    return 0


def foreground(containerizer, container_id: str) -> int:
    """Docker: stream the output as it comes; external: print it at the end. Signals are passed
    on to the task; the container is removed at the end however the end comes (a closed pipe on
    our stdout, say), as the Mesos containerizer's foreground run does."""
    def forward(signum, _frame):
        containerizer.kill(container_id, signum)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    sinks = {1: sys.stdout.buffer, 2: sys.stderr.buffer}
    try:
        if containerizer.name == "docker":
            for stream, chunk in containerizer.output(container_id, follow=True):
                sinks.get(stream, sinks[1]).write(chunk)
                sinks.get(stream, sinks[1]).flush()
        termination = containerizer.wait(container_id)
        if containerizer.name != "docker":
            files = containerizer.files(container_id)
            for name, sink in (("stdout", sinks[1]), ("stderr", sinks[2])):
                try:
                    with os.fdopen(files.open_in_sandbox(name), "rb") as f:
                        sink.write(f.read())
                        sink.flush()
                except FileNotFoundError:
                    pass
    finally:
        containerizer.destroy(container_id, remove_sandbox=True)
    if termination.reason:
        print(f"corral: {termination.reason}: {termination.message}", file=sys.stderr)
    return termination.shell_exit_code()
