"""`corral run`: build the container's config from the options, launch it, and either print its
id (--detach) or follow it in the foreground until it ends."""

from __future__ import annotations

import os
import signal
import sys

from corral.types import NOT_SUPPORTED, ContainerConfig, CorralError, InvalidInput, Resources

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
        argv=argv, env=_env(args.env), resources=Resources(cpus=args.cpus, mem_mb=args.mem),
        isolation=parse_isolation(args.isolation), workdir=args.workdir, user=args.user,
        hostname=args.hostname, cgroups_enable_cfs=args.cgroups_enable_cfs, volumes=args.volume,
        image={"type": args.image_type.upper(), "name": args.image} if args.image else None,
        containerizer=args.containerizer, rootfs=args.rootfs, network=args.network, ports=args.port,
        **_confinement(args), **_io(args))
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
    if config.attach:
        return _attached(mc, container_id, config, args.detach_keys)
    return _foreground(mc, container_id)


def _env(items: list[str]) -> dict[str, str]:
    """--env K=V, parsed as exec's are (cli/exec.py): that module only where one is given, not on
    every cold run's way."""
    if not items:
        return {}
    from .exec import parse_env
    return parse_env(items)


def _io(args) -> dict:
    """The run options of the task's I/O (docs/io.md). In the foreground, -i or -t is a launch
    and an attach: the container then holds its output until we are connected."""
    if args.tty and args.interactive and not args.detach and not os.isatty(0):
        raise CorralError("the input device is not a TTY: -it needs a terminal on stdin (leave out -t)")
    if args.log_max_files is not None and args.log_max_size is None:
        raise InvalidInput("--log-max-files needs --log-max-size")
    return dict(stdin=args.interactive, tty=args.tty, attach=(args.interactive or args.tty) and not args.detach,
                log_max_size=args.log_max_size, log_max_files=args.log_max_files)


def _confinement(args) -> dict:
    """The run options that change the container's confinement, checked here (one line, exit 2).
    Each check's module is imported only when its option is given: a cold run pays for none."""
    if args.cap_add or args.cap_drop:
        from corral.isolators.capabilities import normalize
        for name in args.cap_add + args.cap_drop:
            normalize(name)
    if args.device:
        from corral.isolators.devices import parse_device
        for spec in args.device:
            parse_device(spec)
    rlimits = []
    if args.ulimit:
        from corral.isolators.rlimits import parse_ulimit
        rlimits = [parse_ulimit(u) for u in args.ulimit]
    profile = args.seccomp_profile
    if profile is not None and profile != "unconfined":
        if not os.path.isfile(profile):
            raise InvalidInput(f"--seccomp-profile {profile}: no such file")
        profile = os.path.abspath(profile)
    return dict(privileged=args.privileged, cap_add=args.cap_add, cap_drop=args.cap_drop, seccomp_profile=profile,
                devices=args.device, pids_limit=args.pids_limit, rlimits=rlimits)


def _new_container_id() -> str:
    raw = os.urandom(16).hex()
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


def forward_signals(mc, container_id: str) -> None:
    """SIGINT, SIGTERM and SIGHUP to us go on to the task (with -it, ^C is a key that the task's
    own terminal turns into its SIGINT)."""
    def forward(signum, _frame):
        mc.kill(container_id, signum)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)


def _foreground(mc, container_id: str) -> int:
    """Stream the task's output while it runs (where its containerizer can follow it; else once it
    has ended), pass our signals on to it; remove it at the end, however the end comes (a closed
    pipe on our stdout, say), as `docker run --rm` does."""
    forward_signals(mc, container_id)
    sinks = {1: sys.stdout.buffer, 2: sys.stderr.buffer}
    try:
        for stream, chunk in mc.output(container_id, follow=True):
            sink = sinks.get(stream, sinks[1])
            sink.write(chunk)
            sink.flush()
        termination = mc.wait(container_id)
    finally:
        mc.destroy(container_id, remove_sandbox=True)
    return _ended(termination)


def _attached(mc, container_id: str, config: ContainerConfig, detach_keys: str | None) -> int:
    """_foreground for a container with -i or -t: our stdin goes to the task, its output comes
    through its attach connection (with -it, our terminal is raw meanwhile). The detach keys
    leave it running, as `docker run -it` does: it is then a detached container (corral attach,
    corral destroy), and we exit 0."""
    from corral.terminal import Detached
    forward_signals(mc, container_id)
    try:
        with mc.attach(container_id) as attachment:
            if not relay(attachment, config.stdin, config.tty, detach_keys):
                raise BrokenPipeError       # we stopped reading (`| head`): as _foreground's write would
    except Detached:
        return 0
    except BaseException:
        mc.destroy(container_id, remove_sandbox=True)
        raise
    try:
        termination = mc.wait(container_id)
    finally:
        mc.destroy(container_id, remove_sandbox=True)
    return _ended(termination)


def relay(attachment, stdin: bool, tty: bool, detach_keys: str | None = None) -> bool:
    """Our stdin (if `stdin`) to the task, its output to ours, until it ends (True) or we stop
    taking it (False). With a tty, its window size is ours; with a tty and stdin, our terminal is
    raw meanwhile (our keys, ^C and ^Z too, go to the task's terminal), restored however this
    ends, and `detach_keys` (Docker's format; None: ctrl-p,ctrl-q) typed raise Detached."""
    from corral.terminal import Terminal, parse_detach_keys
    terminal = Terminal(detach_keys=parse_detach_keys(detach_keys))
    try:
        if tty and stdin:
            terminal.__enter__()
        return attachment.relay(0 if stdin else None, {1: 1, 2: 2}, terminal if tty else None)
    finally:
        terminal.restore()


def _ended(termination) -> int:
    if termination.reason:
        print(f"corral: {termination.reason}: {termination.message}", file=sys.stderr)
    return termination.shell_exit_code()
