"""The commands on existing containers (ps, wait, kill, destroy, usage, logs) and on images
(pull, images). Each finds a container's containerizer from its files (cli/containerizers.py)."""

from __future__ import annotations

import json
import os
import sys

from corral.types import CorralError, NoSuchContainer, parse_signal

from . import containerizers


def cmd_ps(args) -> int:
    rows = []
    for mc in containerizers.present(args):
        try:
            for container_id in mc.containers():
                try:
                    rows.append(mc.status(container_id))
                except NoSuchContainer:
                    continue        # destroyed while we looked
        except CorralError as e:    # dockerd down, say: the others' containers are still listed
            print(f"corral: {mc.name}: {e}", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'CONTAINER ID':<38} {'CONTAINERIZER':<13} {'STATE':<8} {'PID':>7} {'EXIT':>5}  COMMAND")
    for row in rows:
        termination = row["termination"]
        code = "" if not termination else (termination["exit_code"] if termination["exit_code"] is not None
                                           else f"S{termination['signal']}")
        print(f"{row['container_id']:<38} {row['containerizer']:<13} {row['state']:<8} {row['pid'] or '':>7} "
              f"{code!s:>5}  {' '.join(row['config']['argv'])[:60]}")
    return 0


def cmd_wait(args) -> int:
    termination = containerizers.owner(args, args.container_id).wait(args.container_id)
    if args.json:
        print(json.dumps(termination.to_dict(), sort_keys=True))
    else:
        print(termination.shell_exit_code())
    return 0


def cmd_kill(args) -> int:
    sig = parse_signal(args.signal)         # bad input is refused before any lookup
    containerizers.owner(args, args.container_id).kill(args.container_id, sig)
    return 0


def cmd_destroy(args) -> int:
    containerizers.owner(args, args.container_id).destroy(args.container_id, remove_sandbox=True)
    print(args.container_id)
    return 0


def cmd_usage(args) -> int:
    print_usage(containerizers.owner(args, args.container_id).usage(args.container_id), args.json)
    return 0


def print_usage(stats: dict, as_json: bool) -> None:
    """ResourceStatistics as JSON, or a `key: value` line each (also for --agent's usage)."""
    if as_json:
        print(json.dumps(stats, sort_keys=True))
    else:
        for key, value in stats.items():
            print(f"{key}: {value}")


def cmd_logs(args) -> int:
    for stream, chunk in containerizers.owner(args, args.container_id).output(args.container_id, follow=args.follow):
        if (stream == 2) == args.stderr:
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
    return 0


def cmd_attach(args) -> int:
    """As docker attach: the running container's output from now on, following, and our stdin
    to it when it was started with -i (raw mode on our terminal when it has a tty); the exit code
    is the container's once it ends. Our SIGINT, SIGTERM and SIGHUP go to the task. The detach
    keys (with a tty) leave it running: Detached, which main() prints, exit 1, as docker attach."""
    from .run import forward_signals, relay
    mc = containerizers.owner(args, args.container_id)
    if mc.status(args.container_id)["state"] == "EXITED":
        raise CorralError(f"container {args.container_id} has ended: nothing to attach to")
    config = mc.files(args.container_id).config()
    stdin = config.stdin and not args.no_stdin
    if stdin and config.tty and not os.isatty(0):
        raise CorralError("the input device is not a TTY: the container has a tty (give --no-stdin)")
    forward_signals(mc, args.container_id)
    attachment = mc.attach(args.container_id)
    if attachment is None:          # a container whose task writes its files itself: follow them
        for stream, chunk in mc.output(args.container_id, follow=True, since_now=True):
            (sys.stdout if stream == 1 else sys.stderr).buffer.write(chunk)
            (sys.stdout if stream == 1 else sys.stderr).buffer.flush()
    else:
        with attachment:
            if not relay(attachment, stdin, config.tty, args.detach_keys):
                return 0            # we stopped reading: the container runs on
    return mc.wait(args.container_id).shell_exit_code()


def cmd_pull(args) -> int:
    from corral.provisioner import cli as images
    return images.cmd_pull(args)


def cmd_images(args) -> int:
    from corral.provisioner import cli as images
    return images.cmd_images(args)


COMMANDS = {"ps": cmd_ps, "wait": cmd_wait, "kill": cmd_kill, "destroy": cmd_destroy,
            "usage": cmd_usage, "logs": cmd_logs, "attach": cmd_attach, "pull": cmd_pull, "images": cmd_images}
