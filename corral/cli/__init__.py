"""The `corral` command: run, exec, ps, wait, kill, destroy, usage, logs, pull, images, and `agent`.

    options.py          the parser, built for the one subcommand invoked; value checks
    run.py              corral run: the config, the launch, the foreground
    exec.py             corral exec: a command in a running container, its terminal relayed
    commands.py         the commands on existing containers and on images
    containerizers.py   the one factory: which containerizer launches, which owns an id
    remote.py           --agent HOST:PORT: the container commands through an agent's API

Bad input is one line and exit status 2; a failure of the operation one line and exit status 1.
"""

from __future__ import annotations

import os
import sys
from _signal import SIGPIPE     # signal's C core: the signal module imports enum, milliseconds of a cold exec

from corral.types import CorralError, InvalidInput


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["agent"]:
        # The agent has mesos-agent's flags (--work_dir, --port, ...) and a parser of its own.
        from corral.agent.main import main as agent_main
        sys.exit(agent_main(argv[1:]))
    # Everything after the first `--` is the command, untouched by option parsing.
    command: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, command = argv[:split], argv[split + 1:]
    try:
        code = None
        if "exec" in argv:
            from .exec import exec_quickly
            code = exec_quickly(argv, command)
        if code is None:
            code = _run_command(argv, command)
    except BrokenPipeError:
        code = 128 + SIGPIPE    # as a shell reports a writer killed by SIGPIPE
    except InvalidInput as e:
        print(f"corral: {e}", file=sys.stderr)
        code = 2
    except (CorralError, OSError) as e:
        print(f"corral: {e}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    # Skip the interpreter's teardown (module and object clean-up): it costs a cold run ~10 ms
    # and there is nothing left to release that the kernel does not release for us.
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        code = code or 128 + SIGPIPE
    os._exit(code)


def _run_command(argv: list[str], command: list[str]) -> int:
    from .options import build_parser, invoked
    args = build_parser(invoked(argv)).parse_args(argv)
    if command and args.subcommand not in ("run", "exec"):
        raise InvalidInput(f"'--' is only for corral run and exec, not {args.subcommand}")
    if args.agent:
        from .remote import run as through_agent
        return through_agent(args, command)
    if os.geteuid() != 0 and args.subcommand in ("run", "exec", "kill", "destroy", "attach"):
        raise CorralError(f"corral {args.subcommand} needs root: it uses cgroups and namespaces")
    if args.subcommand == "run":
        from .run import cmd_run
        return cmd_run(args, command)
    if args.subcommand == "exec":
        from .exec import cmd_exec
        return cmd_exec(args, command)
    from .commands import COMMANDS
    return COMMANDS[args.subcommand](args)
