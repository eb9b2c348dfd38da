"""`corral run`: build the container's config from the options, launch it, and either print its
id (--detach) or follow it in the foreground until it ends."""

from __future__ import annotations

import os
import signal
import sys

from corral.types import NOT_SUPPORTED, ContainerConfig, InvalidInput, Resources

from . import containerizers


def cmd_run(args, command: list[str]) -> int:
    from corral.isolators.registry import parse_isolation
    if args.shell is not None and command:
        raise InvalidInput("give either --shell 'CMD' or -- CMD [ARG...], not both")
    argv = ["/bin/sh", "-c", args.shell] if args.shell is not None else command
    if args.image is not None and not args.image.strip():
        raise InvalidInput("--image needs an image reference, such as busybox")
    if not argv and not args.image:
        raise InvalidInput("no command: corral run [OPTIONS] -- CMD [ARG...]")
    config = ContainerConfig(
        argv=argv, env=parse_env(args.env), resources=Resources(cpus=args.cpus, mem_mb=args.mem),
        isolation=parse_isolation(args.isolation), workdir=args.workdir, user=args.user,
        hostname=args.hostname, cgroups_enable_cfs=args.cgroups_enable_cfs, volumes=args.volume,
        image={"type": args.image_type.upper(), "name": args.image} if args.image else None,
        containerizer=args.containerizer, rootfs=args.rootfs, network=args.network, ports=args.port,
        **_confinement(args))
    container_id = args.name or _new_container_id()
    if containerizers.names(args) == ["mesos"]:
        # The fast path, and its own message: the Mesos containerizer refuses a network of its own.
        mc = containerizers.make(args, "mesos")
        if mc.launch(container_id, config) == NOT_SUPPORTED:
            raise InvalidInput("the mesos containerizer shares the host's network: --network and --port "
                               "need --containerizer docker")
    else:
        mc = containerizers.launch(args, container_id, config)
    if args.detach:
        print(container_id)
        return 0
    return _foreground(mc, container_id)


def parse_env(items: list[str]) -> dict[str, str]:
    env = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInput(f"--env wants K=V, not {item!r}")
        env[key] = value
    return env


def _confinement(args) -> dict:
    """The run options that change the container's confinement, checked here (one line, exit 2)."""
    from corral.isolators.capabilities import normalize
    from corral.isolators.devices import parse_device
    from corral.isolators.rlimits import parse_ulimit
    for name in args.cap_add + args.cap_drop:
        normalize(name)
    for spec in args.device:
        parse_device(spec)
    profile = args.seccomp_profile
    if profile is not None and profile != "unconfined":
        if not os.path.isfile(profile):
            raise InvalidInput(f"--seccomp-profile {profile}: no such file")
        profile = os.path.abspath(profile)
    return dict(privileged=args.privileged, cap_add=args.cap_add, cap_drop=args.cap_drop, seccomp_profile=profile,
                devices=args.device, pids_limit=args.pids_limit, rlimits=[parse_ulimit(u) for u in args.ulimit])


def _new_container_id() -> str:
    raw = os.urandom(16).hex()
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


def _foreground(mc, container_id: str) -> int:
    """Stream the task's output while it runs (where its containerizer can follow it; else once it
    has ended), pass our signals on to it; remove it at the end, however the end comes (a closed
    pipe on our stdout, say), as `docker run --rm` does."""
    def forward(signum, _frame):
        mc.kill(container_id, signum)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    sinks = {1: sys.stdout.buffer, 2: sys.stderr.buffer}
    try:
        for stream, chunk in mc.output(container_id, follow=True):
            sink = sinks.get(stream, sinks[1])
            sink.write(chunk)
            sink.flush()
        termination = mc.wait(container_id)
    finally:
        mc.destroy(container_id, remove_sandbox=True)
    if termination.reason:
        print(f"corral: {termination.reason}: {termination.message}", file=sys.stderr)
    return termination.shell_exit_code()
