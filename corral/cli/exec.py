"""`corral exec [-i] [-t] [--user U] [--env K=V] [--workdir D] ID -- CMD [ARG...]`: a command in
a running container, by its containerizer's exec (containerizers/base.py's Execution).

Without -t the command has our stdout and stderr themselves (and our stdin with -i), where the
containerizer can hand fds over (Mesos), else its streams are copied here (docker); our
SIGINT, SIGTERM and SIGHUP are passed on to it. With -t it gets a terminal of its own, relayed
to ours (corral/terminal.py): ours in raw mode with -i, so that Ctrl-C and Ctrl-Z reach the
command's terminal as keys, and its size followed. Our exit code is the command's (128+N for a
death by signal N; 126 or 127 when it could not start, as a shell's).
"""

from __future__ import annotations

import signal

from corral.types import ExecConfig, ExecFailed, InvalidInput

from . import containerizers
from .run import parse_env


def cmd_exec(args, command: list[str]) -> int:
    if not command:
        raise InvalidInput("no command: corral exec [OPTIONS] ID -- CMD [ARG...]")
    config = ExecConfig(argv=command, env=parse_env(args.env), user=args.user, workdir=args.workdir,
                        tty=args.tty, interactive=args.interactive)
    containerizer = containerizers.owner(args, args.container_id)
    try:
        if args.tty:
            return _with_terminal(containerizer, args.container_id, config)
        return _plain(containerizer, args.container_id, config)
    except ExecFailed as e:
        import sys
        print(f"corral: {e}", file=sys.stderr)
        return e.exit_code


def _plain(containerizer, container_id: str, config: ExecConfig) -> int:
    # Our signals are taken before the command starts: one that comes while it is being started
    # (the agent ending a session at once, say) is passed on once it runs, not lost with us.
    started: list = []
    pending: list[int] = []

    def forward(signum, _frame):
        if started:
            started[0].signal(signum)
        else:
            pending.append(signum)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    with containerizer.exec(container_id, config) as execution:
        started.append(execution)
        for signum in pending:
            execution.signal(signum)
        if execution.outputs:
            from corral.terminal import relay
            relay(0 if config.interactive else None, execution.to_process, execution.outputs,
                  on_input_end=execution.end_input)
        return execution.wait()


def _with_terminal(containerizer, container_id: str, config: ExecConfig) -> int:
    from corral.terminal import Terminal, relay, window_size
    with Terminal(0, raw=config.interactive) as terminal:
        config.size = terminal.size() or window_size(1)
        with containerizer.exec(container_id, config) as execution:
            relay(0 if config.interactive else None, execution.to_process, execution.outputs, terminal=terminal,
                  on_resize=execution.resize, on_input_end=execution.end_input)
            return execution.wait()
