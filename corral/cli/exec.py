"""`corral exec [-i] [-t] [--detach-keys KEYS] [--user U] [--env K=V] [--workdir D] ID -- CMD [ARG...]`:
a command in a running container, by its containerizer's exec (containerizers/base.py's Execution).

Without -t the command has our stdout and stderr themselves (and our stdin with -i), where the
containerizer can hand fds over (Mesos), else its streams are copied here (docker); our
SIGINT, SIGTERM and SIGHUP are passed on to it. With -t it gets a terminal of its own, relayed
to ours (corral/terminal.py): ours in raw mode with -i, so that Ctrl-C and Ctrl-Z reach the
command's terminal as keys, and its size followed. Our exit code is the command's (128+N for a
death by signal N; 126 or 127 when it could not start, as a shell's). With -it, the detach keys
(ctrl-p,ctrl-q) leave the command running, as `docker exec -it`'s: "read escape sequence", exit 1.

A cold exec into a Mesos container is measured against `runc exec`, where a Python start alone
is most of runc's time: exec_quickly() reads plain options without argparse and starts the
command with containerizers/mesos/exec.py's start() (which SyncMesosContainerizer.exec runs
too) without making a containerizer. Its imports leave out argparse, re, json, enum,
functools and ctypes: it hands the command to the container's init (execserver.py), which forks
it where it must be, and waits.
"""

from __future__ import annotations

import os
import _signal as signal     # signal's C core: the signal module imports enum, milliseconds of a cold exec

from corral.types import ExecConfig, ExecFailed, InvalidInput, check_cgroups_root


def cmd_exec(args, command: list[str]) -> int:
    from . import containerizers
    config = _config(args, command)
    containerizer = containerizers.owner(args, args.container_id)
    return _run(config, lambda: containerizer.exec(args.container_id, config), args.detach_keys)


def exec_quickly(argv: list[str], command: list[str]) -> int | None:
    """`corral exec` as cmd_exec runs it, where argv is plain (_plain_options) and the container
    is Mesos's (whose files come first in containerizers.owner's search); None for anything
    else, which main() then parses with argparse and runs as every other command."""
    args = _plain_options(argv)
    if args is None or not command or os.geteuid() != 0:
        return None
    from corral.containerizers.state import ContainerFiles
    files = ContainerFiles(args["runtime_dir"], args["work_dir"], args["container_id"])
    if not files.exists():
        return None
    from corral.containerizers.mesos.exec import start
    config = ExecConfig(argv=command, env=parse_env(args["env"]), user=args["user"], workdir=args["workdir"],
                        tty=args["tty"], interactive=args["interactive"])
    return _run(config, lambda: start(files, args["cgroups_root"], config, (0, 1, 2)), args["detach_keys"])


_FLAGS = {"-i": ("interactive",), "--interactive": ("interactive",), "-t": ("tty",), "--tty": ("tty",),
          "-it": ("interactive", "tty"), "-ti": ("interactive", "tty")}
_VALUES = {"-u": "user", "--user": "user", "-e": "env", "--env": "env", "-w": "workdir", "--workdir": "workdir",
           "--detach-keys": "detach_keys", "--work-dir": "work_dir", "--runtime-dir": "runtime_dir", "--cgroups-root": "cgroups_root"}


def _plain_options(argv: list[str]) -> dict | None:
    """`corral exec`'s options (options.py's parser) as a dict, where they are plain: the flags and
    options above, each value separate or after '=', with no --agent and one ID. None for anything
    else (help, abbreviations, other options, errors): argparse reads those, and words errors."""
    env = os.environ.get
    if env("CORRAL_AGENT"):
        return None
    found = {"interactive": False, "tty": False, "user": None, "env": [], "workdir": None, "container_id": None,
             "detach_keys": env("CORRAL_DETACH_KEYS") or None,
             "work_dir": env("CORRAL_WORK_DIR", "/var/lib/corral"), "runtime_dir": env("CORRAL_RUNTIME_DIR", "/run/corral"),
             "cgroups_root": env("CORRAL_CGROUPS_ROOT", "corral")}
    positional = []
    tokens = iter(argv)
    for token in tokens:
        name, given, value = token.partition("=") if token.startswith("--") else (token, "", None)
        if token in _FLAGS:
            for flag in _FLAGS[token]:
                found[flag] = True
        elif name in _VALUES:
            value = value if given else next(tokens, None)
            if value is None or value.startswith("-"):
                return None
            if _VALUES[name] == "env":
                found["env"].append(value)
            else:
                found[_VALUES[name]] = value
        elif token.startswith("-"):
            return None
        else:
            positional.append(token)
    if len(positional) != 2 or positional[0] != "exec":
        return None
    found["container_id"] = positional[1]
    for key in ("work_dir", "runtime_dir"):     # as options.py's _directory
        if not found[key].strip():
            return None
        found[key] = os.path.abspath(found[key])
    try:
        check_cgroups_root(found["cgroups_root"])
        if found["detach_keys"]:
            from corral.terminal import parse_detach_keys
            parse_detach_keys(found["detach_keys"])
    except InvalidInput:
        return None
    return found


def _config(args, command: list[str]) -> ExecConfig:
    if not command:
        raise InvalidInput("no command: corral exec [OPTIONS] ID -- CMD [ARG...]")
    return ExecConfig(argv=command, env=parse_env(args.env), user=args.user, workdir=args.workdir,
                      tty=args.tty, interactive=args.interactive)


def parse_env(items: list[str]) -> dict[str, str]:
    """--env K=V of run and exec."""
    env = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInput(f"--env wants K=V, not {item!r}")
        env[key] = value
    return env


def _run(config: ExecConfig, start, detach_keys: str | None) -> int:
    """Start the command (`start()`: its Execution), relay it, and answer its exit code."""
    try:
        if config.tty:
            return _with_terminal(config, start, detach_keys)
        return _plain(config, start)
    except ExecFailed as e:
        import sys
        print(f"corral: {e}", file=sys.stderr)
        return e.exit_code


def _plain(config: ExecConfig, start) -> int:
    # Handled from before the start: a signal that comes while the command starts (an agent's
    # session that ends at once) must reach the command, not end us and leave it running.
    started, pending = [], []

    def forward(signum, _frame):
        if started:
            started[0].signal(signum)
        else:
            pending.append(signum)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    with start() as execution:
        started.append(execution)
        for signum in pending:
            execution.signal(signum)
        if execution.outputs:
            from corral.terminal import relay
            relay(0 if config.interactive else None, execution.to_process, execution.outputs,
                  on_input_end=execution.end_input)
        return execution.wait()


def _with_terminal(config: ExecConfig, start, detach_keys: str | None) -> int:
    """The command on a terminal, relayed to ours. The detach keys leave it running (Detached,
    which main() prints): a terminal of ours (Mesos's exec: its master is ours) is then held
    open by a process of its own (terminal.hold), as the last close would hang it up."""
    from corral.terminal import Detached, Terminal, hold, parse_detach_keys, relay, window_size
    with Terminal(0, raw=config.interactive, detach_keys=parse_detach_keys(detach_keys)) as terminal:
        config.size = terminal.size() or window_size(1)
        with start() as execution:
            try:
                relay(0 if config.interactive else None, execution.to_process, execution.outputs, terminal=terminal,
                      on_resize=execution.resize, on_input_end=execution.end_input)
            except Detached:
                if os.isatty(execution.to_process):
                    hold(execution.to_process)
                raise
            return execution.wait()
