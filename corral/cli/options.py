"""The `corral` command's options: the parser, built for the one subcommand invoked, and the
checks that turn bad values into one line and exit status 2.

Its imports are kept to the standard library's cheapest modules and corral's own: a cold
`corral run` is measured against runc, and every module costs milliseconds here.
"""

from __future__ import annotations

import argparse
import os
import re

from corral.types import (MAX_LOG_FILES, MAX_SECONDS, InvalidInput, check_cgroups_root, check_cpus, check_mem_mb,
                          check_pids_limit)

CONTAINERIZERS = ("mesos", "docker", "external")
# isolators.registry's DEFAULT_ISOLATION, written out: the help needs no import of the registry.
DEFAULT_ISOLATION = ("cgroups/cpu,cgroups/mem,namespaces/pid,namespaces/ipc,linux/capabilities,linux/nnp,"
                     "linux/seccomp,linux/masked_paths,cgroups/devices,linux/devices,cgroups/pids,posix/rlimits")


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter, sizing the terminal with os rather than shutil (5 ms to import)."""

    def __init__(self, prog, indent_increment=2, max_help_position=24, width=None):
        if width is None:
            try:
                width = int(os.environ.get("COLUMNS") or os.get_terminal_size().columns) - 2
            except (OSError, ValueError):
                width = 78
        super().__init__(prog, indent_increment, max_help_position, width)


class _Parser(argparse.ArgumentParser):
    """argparse, but bad input is one line and exit status 2, as the CLI contract says."""

    def __init__(self, *args, formatter_class=_Formatter, **kwargs):
        super().__init__(*args, formatter_class=formatter_class, **kwargs)

    def error(self, message):
        raise InvalidInput(message)


def _global_options(defaults: bool) -> argparse.ArgumentParser:
    # The same options on the main parser (with defaults) and on each subcommand (without, so
    # that a value given before the subcommand is not overwritten): both positions work.
    parent = _Parser(add_help=False)
    env = os.environ.get
    default = (lambda value: value) if defaults else (lambda value: argparse.SUPPRESS)
    parent.add_argument("--work-dir", default=default(env("CORRAL_WORK_DIR", "/var/lib/corral")), type=_directory,
                        help="sandboxes and state that outlive a reboot (env CORRAL_WORK_DIR)")
    parent.add_argument("--runtime-dir", default=default(env("CORRAL_RUNTIME_DIR", "/run/corral")), type=_directory,
                        help="per-container runtime state (env CORRAL_RUNTIME_DIR)")
    parent.add_argument("--cgroups-root", default=default(env("CORRAL_CGROUPS_ROOT", "corral")),
                        type=_checked(check_cgroups_root),
                        help="the cgroup under which every container's cgroups live (env CORRAL_CGROUPS_ROOT)")
    parent.add_argument("--agent", default=default(env("CORRAL_AGENT")), metavar="HOST:PORT",
                        help="ps, wait, kill, destroy, usage, logs, attach, exec through this agent's API (env CORRAL_AGENT)")
    # Other containerizers (corral/cli/containerizers.py).
    parent.add_argument("--containerizers", default=default(env("CORRAL_CONTAINERIZERS", "mesos")),
                        help="containerizers to try, in this order: mesos,docker,external (env CORRAL_CONTAINERIZERS)")
    parent.add_argument("--docker-socket", default=default(None),
                        help="dockerd's address (default: DOCKER_HOST, else unix:///var/run/docker.sock)")
    parent.add_argument("--docker-kill-orphans", default=default(True), type=_boolean,
                        help="remove corral's docker containers that no checkpoint knows (default true)")
    parent.add_argument("--external-containerizer-path", default=default(None), metavar="PROGRAM")
    parent.add_argument("--external-containerizer-timeout", default=default(30.0), type=_seconds,
                        metavar="SECONDS", help="time limit of each call of the program but wait (30)")
    return parent


def _checked(check):
    """An argparse type from one of corral.types's checks (its InvalidInput as argparse's error)."""
    def convert(value):
        try:
            return check(value)
        except InvalidInput as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return convert


def _boolean(text: str) -> bool:
    if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise argparse.ArgumentTypeError(f"not a boolean: {text!r}")
    return text.lower() in ("true", "1", "yes")


def _run_arguments(run: argparse.ArgumentParser) -> None:
    from corral.provisioner.options import add_options as add_image_options
    run.usage = ("corral run [OPTIONS] -- CMD [ARG...]  |  corral run [OPTIONS] --shell 'CMD'  |  "
                 "corral run --image REF [OPTIONS] [-- CMD [ARG...]]")
    run.add_argument("--shell", metavar="CMD", help="run CMD with /bin/sh -c")
    run.add_argument("--cpus", type=_cpus, help="CPUs (cpu shares; a CFS quota with --cgroups-enable-cfs)")
    run.add_argument("--mem", type=parse_mem_mb, metavar="MB", help="memory limit: MB, or a size such as 64M or 1G")
    run.add_argument("--isolation", default=DEFAULT_ISOLATION, help=f"isolators, comma separated ({DEFAULT_ISOLATION})")
    run.add_argument("--env", action="append", default=[], metavar="K=V", help="environment variable (repeatable)")
    run.add_argument("--workdir", metavar="DIR", help="working directory (relative: to the sandbox)")
    run.add_argument("--user", metavar="NAME", help="run the task as this user")
    run.add_argument("--hostname", metavar="NAME", help="hostname in a new UTS namespace")
    run.add_argument("--name", metavar="ID", help="container id (generated when absent)")
    run.add_argument("--detach", "-d", action="store_true", help="print the container id and return at once")
    # Interactive I/O (docs/io.md), as Docker's.
    run.add_argument("--interactive", "-i", action="store_true",
                     help="keep the task's stdin open: ours in the foreground, corral attach's later")
    run.add_argument("--tty", "-t", action="store_true", help="give the task a pseudo-terminal")
    _detach_keys_argument(run)
    run.add_argument("--log-max-size", type=parse_log_size, metavar="SIZE",
                     help="rotate stdout and stderr at this size: bytes, or 10k, 64M, 1G (as Docker's max-size)")
    run.add_argument("--log-max-files", type=_log_max_files, metavar="N",
                     help="files kept per stream with --log-max-size, the one written included (default 1)")
    run.add_argument("--cgroups-enable-cfs", action="store_true", help="enforce cpus as a hard CFS quota")
    run.add_argument("--image", metavar="REF", help="run in this image's root filesystem (pulled if missing); "
                     "without a command, the image's Entrypoint and Cmd")
    run.add_argument("--image-type", choices=("docker", "appc"), default="docker")
    run.add_argument("--volume", action="append", default=[], metavar="HOST:CONTAINER[:ro]",
                     help="bind mount into the image's rootfs (repeatable; a relative HOST is in the sandbox)")
    add_image_options(run)
    run.add_argument("--containerizer", choices=CONTAINERIZERS,
                     help="this containerizer alone (default: --containerizers, in order)")
    run.add_argument("--rootfs", metavar="DIR", type=_directory,
                     help="a root filesystem ready on the host to run the command in")
    run.add_argument("--network", metavar="NAME", help="docker: host (default), bridge, none or a network")
    run.add_argument("--port", "-p", action="append", default=[], metavar="HOST:CONTAINER",
                     help="docker, off the host network: publish a port; repeatable")
    # Confinement (docs/confinement.md): Docker's options, Docker's defaults.
    run.add_argument("--privileged", action="store_true",
                     help="no confinement: every capability and device, no seccomp filter, no masked paths")
    run.add_argument("--cap-add", action="append", default=[], metavar="CAP",
                     help="add a capability to Docker's default set (CHOWN or CAP_CHOWN, ALL); repeatable")
    run.add_argument("--cap-drop", action="append", default=[], metavar="CAP",
                     help="drop a capability (or ALL); repeatable")
    run.add_argument("--seccomp-profile", metavar="FILE",
                     help="a seccomp profile (Docker's JSON format), or unconfined (default: Docker's default)")
    run.add_argument("--device", action="append", default=[], metavar="HOST[:CONTAINER][:rwm]",
                     help="let the container use a host device; repeatable")
    run.add_argument("--pids-limit", type=_pids_limit, metavar="N", help="at most N processes and threads")
    run.add_argument("--ulimit", action="append", default=[], metavar="NAME=SOFT[:HARD]",
                     help="a resource limit, as Docker's (nofile=1024:4096); repeatable")


def _attach_arguments(attach: argparse.ArgumentParser) -> None:
    _id_argument(attach)
    attach.add_argument("--no-stdin", action="store_true", help="do not pass our stdin to the task")
    _detach_keys_argument(attach)


def _detach_keys_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--detach-keys", default=os.environ.get("CORRAL_DETACH_KEYS") or None, type=_detach_keys,
                        metavar="KEYS", help="keys that detach from a terminal session (-it), leaving the task running: "
                        "characters or ctrl-<a-z, @, [, \\, ], ^, _>, comma separated, as Docker's "
                        "(default ctrl-p,ctrl-q; env CORRAL_DETACH_KEYS)")


def _detach_keys(text: str) -> str:
    """Docker's --detach-keys, checked (corral/terminal.py reads them); kept as written, for dockerd."""
    from corral.terminal import parse_detach_keys
    _checked(parse_detach_keys)(text)
    return text


def _ps_arguments(ps: argparse.ArgumentParser) -> None:
    ps.add_argument("--json", action="store_true")


def _id_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container_id", metavar="ID")
    parser.add_argument("--containerizer", choices=CONTAINERIZERS,
                        help="the containerizer that has it (default: the one whose files hold the id)")


def _wait_arguments(wait: argparse.ArgumentParser) -> None:
    _id_argument(wait)
    wait.add_argument("--json", action="store_true", help="print the whole termination as JSON")


def _kill_arguments(kill: argparse.ArgumentParser) -> None:
    _id_argument(kill)
    kill.add_argument("--signal", "-s", default="SIGTERM", help="signal name or number (default SIGTERM)")


def _usage_arguments(usage: argparse.ArgumentParser) -> None:
    _id_argument(usage)
    usage.add_argument("--json", action="store_true")


def _pull_arguments(pull: argparse.ArgumentParser) -> None:
    from corral.provisioner import cli as images
    images.pull_arguments(pull)


def _images_arguments(images_parser: argparse.ArgumentParser) -> None:
    from corral.provisioner import cli as images
    images.images_arguments(images_parser)


def _logs_arguments(logs: argparse.ArgumentParser) -> None:
    _id_argument(logs)
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing until the container ends")
    logs.add_argument("--stderr", action="store_true", help="stderr instead of stdout")


def _exec_arguments(exec_parser: argparse.ArgumentParser) -> None:
    exec_parser.usage = ("corral exec [-i] [-t] [--detach-keys KEYS] [--user U] [--env K=V] [--workdir DIR] "
                         "ID -- CMD [ARG...]")
    _id_argument(exec_parser)
    exec_parser.add_argument("--interactive", "-i", action="store_true", help="pass our stdin to the command")
    exec_parser.add_argument("--tty", "-t", action="store_true", help="give the command a terminal")
    _detach_keys_argument(exec_parser)
    exec_parser.add_argument("--user", "-u", metavar="NAME", help="run as this user of the container (NAME|UID[:GROUP])")
    exec_parser.add_argument("--env", "-e", action="append", default=[], metavar="K=V",
                             help="an environment variable beside the task's (repeatable)")
    exec_parser.add_argument("--workdir", "-w", metavar="DIR",
                             help="working directory in the container (relative: to the task's)")


# name -> (one-line help, what adds its arguments)
SUBCOMMANDS = {
    "run": ("run a command in a new container", _run_arguments),
    "ps": ("list containers", _ps_arguments),
    "exec": ("run a command in a running container", _exec_arguments),
    "wait": ("wait for a container to end; print its exit code", _wait_arguments),
    "kill": ("signal a container's task", _kill_arguments),
    "destroy": ("kill every process of a container and remove it", _id_argument),
    "usage": ("resource usage (Mesos ResourceStatistics)", _usage_arguments),
    "logs": ("print a container's stdout (or stderr)", _logs_arguments),
    "attach": ("follow a running container's output; pass it our stdin if it has one (run -i)", _attach_arguments),
    "pull": ("pull an image into the store", _pull_arguments),
    "images": ("list stored images (images rm REF, images prune)", _images_arguments),
    "agent": ("run the agent: mesos-agent's flags, the v1 operator API (corral agent --help)", lambda _: None),
}
_GLOBAL_WITH_VALUE = ("--agent", "--work-dir", "--runtime-dir", "--cgroups-root", "--containerizers", "--docker-socket",
                      "--docker-kill-orphans", "--external-containerizer-path", "--external-containerizer-timeout")


def invoked(argv: list[str]) -> str | None:
    """The subcommand argv names, found before parsing: only its options need building."""
    skip = False
    for token in argv:
        if skip:
            skip = False
        elif token in _GLOBAL_WITH_VALUE:
            skip = True
        elif not token.startswith("-"):
            return token if token in SUBCOMMANDS else None
    return None


def build_parser(subcommand: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or, when `subcommand` is given, one with that subcommand
    alone: building every subcommand (argparse looks up translations for each) costs a cold
    run milliseconds."""
    parser = _Parser(prog="corral", parents=[_global_options(True)],
                     description="Launch and inspect isolated containers (Mesos containerizer semantics).")
    sub = parser.add_subparsers(dest="subcommand", metavar="COMMAND", required=True, parser_class=_Parser)
    common = [_global_options(False)]
    for name, (help_text, add_arguments) in SUBCOMMANDS.items():
        if subcommand in (None, name):
            add_arguments(sub.add_parser(name, parents=common, help=help_text))
    return parser


def _log_max_files(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}")
    if not 1 <= int(text) <= MAX_LOG_FILES:
        raise argparse.ArgumentTypeError(f"must be 1 to {MAX_LOG_FILES}: {text!r}")
    return int(text)


def parse_log_size(text: str) -> int:
    """'1048576' (bytes, as Docker's max-size), '10k', '64M', '1G', '1.5MiB' -> bytes."""
    match = _SIZE.fullmatch(text.strip())
    if not match or (match[3] and match[3].lower() != "b" and not match[2]):
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use bytes, or 10k, 64M, 1G)")
    size = int(float(match[1]) * 1024 ** "bkmgt".index((match[2] or "b").lower()))
    if not 0 < size < 1 << 63:
        raise argparse.ArgumentTypeError(f"must be at least 1 byte and under 8 EiB: {text!r}")
    return size


def _pids_limit(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}")
    return _checked(check_pids_limit)(int(text))


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= MAX_SECONDS:       # NaN fails both comparisons
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most {MAX_SECONDS} seconds: {text!r}")
    return value


def _directory(text: str) -> str:
    """A directory, made absolute: the sandboxes' paths are recorded and bind-mounted as they are."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a directory")
    return os.path.abspath(text)


def _cpus(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    return _checked(check_cpus)(value)


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)", re.IGNORECASE)
_UNIT_MB = {"": None, "k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024}


def parse_mem_mb(text: str) -> float:
    """'512' (MB, as Mesos), '64M', '1G', '1.5GiB', '65536K', '1048576B' -> MB."""
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use MB, or 64M, 1G, ...)")
    number, unit, suffix = float(match[1]), match[2].lower(), match[3].lower()
    if unit:
        mb = number * _UNIT_MB[unit]
    elif suffix == "b":
        mb = number / (1024 * 1024)
    elif suffix:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}")
    else:
        mb = number
    try:
        return check_mem_mb(mb)
    except InvalidInput:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 8 EiB: {text!r}") from None
