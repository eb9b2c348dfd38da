"""`corral --agent HOST:PORT ...`: the container commands through a running agent's v1 operator
API instead of this host's files, as the docker CLI talks to dockerd.

    ps        GET /state (every container the agent knows, ended ones until removed)
    wait      WAIT_CONTAINER                     kill     KILL_CONTAINER
    destroy   KILL_CONTAINER (SIGKILL), WAIT_CONTAINER, REMOVE_CONTAINER
    usage     GET_CONTAINERS' resource_statistics
    logs      READ_FILE of the sandbox's stdout or stderr, from offset 0 on (--follow: until it ends)
    attach    ATTACH_CONTAINER_OUTPUT and ATTACH_CONTAINER_INPUT (remote_io.py)
    exec      LAUNCH_NESTED_CONTAINER_SESSION, ATTACH_CONTAINER_INPUT, WAIT_NESTED_CONTAINER

The agent's answers of 4xx are the command's errors, in the agent's words.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import sys
import time
import urllib.parse

from corral.types import CorralError, InvalidInput, NoSuchContainer, Termination, parse_signal

FOLLOW_INTERVAL = 0.2       # seconds between reads of a followed log
CALL_TIMEOUT = 60.0         # any call but a WAIT


class AgentClient:
    """Blocking calls to an agent at HOST:PORT or http://[USER:PASSWORD@]HOST:PORT (basic
    authentication, for an agent started with --credentials)."""

    def __init__(self, address: str):
        url = urllib.parse.urlsplit(address if "://" in address else f"http://{address}")
        if url.scheme != "http" or not url.hostname:
            raise InvalidInput(f"--agent wants HOST:PORT or http://HOST:PORT, not {address!r}")
        try:
            self.host, self.port = url.hostname, url.port or 5051
        except ValueError:
            raise InvalidInput(f"--agent {address}: not a port") from None
        self.address = f"{self.host}:{self.port}"
        self.headers = {}
        if url.username is not None:
            secret = f"{urllib.parse.unquote(url.username)}:{urllib.parse.unquote(url.password or '')}"
            self.headers["Authorization"] = "Basic " + base64.b64encode(secret.encode()).decode()

    def request(self, method: str, path: str, body: dict | None = None, timeout: float | None = CALL_TIMEOUT):
        """The reply's JSON (None for an empty 200). 404 -> NoSuchContainer's line; another 4xx -> InvalidInput."""
        response = self.open(method, path, body, {"Accept": "application/json"}, timeout)
        try:
            raw = response.read()
        except (OSError, http.client.HTTPException) as e:
            raise self._unreachable(e) from None
        finally:
            response.close()
        return json.loads(raw) if raw else None

    def open(self, method: str, path: str, body: dict | None, headers: dict, timeout: float | None = None):
        """The answer, its body still to read (a stream's too), once its status said success."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        data = None if body is None else json.dumps(body).encode()
        try:
            connection.request(method, path, body=data, headers={
                **self.headers, **({"Content-Type": "application/json"} if body is not None else {}), **headers})
            response = connection.getresponse()
            if response.status >= 400:
                self.fail(response.status, response.read())
        except (OSError, http.client.HTTPException) as e:
            connection.close()
            raise self._unreachable(e) from None
        except BaseException:
            connection.close()
            raise
        return response

    def _unreachable(self, error: Exception) -> CorralError:
        return CorralError(f"the agent at {self.address}: {getattr(error, 'strerror', None) or error}")

    def fail(self, status: int, raw: bytes):
        """Raise the agent's 4xx (or 5xx) answer as the command's error."""
        message = raw.decode(errors="replace").strip() or http.client.responses.get(status, str(status))
        if status == 404:
            raise NoSuchContainer(message)
        raise (InvalidInput if status < 500 else CorralError)(f"the agent at {self.address}: {message}")

    def call(self, kind: str, timeout: float | None = CALL_TIMEOUT, **fields) -> dict | None:
        reply = self.request("POST", "/api/v1", {"type": kind, kind.lower(): fields} if fields else {"type": kind},
                             timeout=timeout)
        return reply.get(kind.lower()) if reply else None


def _id(container_id: str) -> dict:
    return {"container_id": {"value": container_id}}


def cmd_ps(client: AgentClient, args) -> int:
    containers = client.request("GET", "/state")["containers"]
    if args.json:
        print(json.dumps(containers, indent=2))
        return 0
    print(f"{'CONTAINER ID':<38} {'STATE':<16} MESSAGE")
    for container in containers:
        last = (container.get("statuses") or [{}])[-1]
        print(f"{container['container_id']['value']:<38} {last.get('state', ''):<16} {(last.get('message') or '')[:60]}")
    return 0


def _wait(client: AgentClient, container_id: str) -> dict:
    return client.call("WAIT_CONTAINER", timeout=None, **_id(container_id))


def cmd_wait(client: AgentClient, args) -> int:
    end = _wait(client, args.container_id)
    if args.json:
        print(json.dumps(end, sort_keys=True))
    else:
        print(Termination(container_id=args.container_id, exit_status=end.get("exit_status"),
                          state=end.get("state") or "").shell_exit_code())
    return 0


def cmd_kill(client: AgentClient, args) -> int:
    client.call("KILL_CONTAINER", **_id(args.container_id), signal=parse_signal(args.signal))
    return 0


def cmd_destroy(client: AgentClient, args) -> int:
    try:
        client.call("KILL_CONTAINER", **_id(args.container_id), signal=9)
    except InvalidInput:
        pass            # it had ended already: the wait and the removal say the rest
    _wait(client, args.container_id)
    client.call("REMOVE_CONTAINER", **_id(args.container_id))
    print(args.container_id)
    return 0


def cmd_usage(client: AgentClient, args) -> int:
    listed = client.call("GET_CONTAINERS", show_standalone=True, show_nested=True)["containers"]
    for container in listed:
        if container["container_id"]["value"] == args.container_id:
            from .commands import print_usage
            print_usage(container.get("resource_statistics") or {}, args.json)
            return 0
    raise NoSuchContainer(f"{args.container_id} (the agent at {client.address} runs no such container)")


def cmd_logs(client: AgentClient, args) -> int:
    """The sandbox's file, read from the agent's files at the path mesos-agent would name it."""
    work_dir = {flag["name"]: flag["value"] for flag in client.call("GET_FLAGS")["flags"]}["work_dir"]
    path = os.path.join(os.path.abspath(work_dir), "containers", args.container_id, "stderr" if args.stderr else "stdout")
    offset, out = 0, sys.stdout.buffer
    while True:
        running = args.follow and _running(client, args.container_id)
        while True:
            reply = client.call("READ_FILE", path=path, offset=offset)
            data = base64.b64decode(reply.get("data") or "")
            if not data:
                break
            out.write(data)
            out.flush()
            offset += len(data)
        if not running:
            return 0
        time.sleep(FOLLOW_INTERVAL)


def cmd_attach(client: AgentClient, args) -> int:
    """ATTACH_CONTAINER_OUTPUT, and our stdin through ATTACH_CONTAINER_INPUT (unless --no-stdin):
    the agent attaches containers launched with a tty (container.tty_info), as Mesos does. Our
    terminal, when stdin is one, is raw meanwhile. The exit code is the container's; the detach
    keys leave it running (Detached, exit 1, as docker attach)."""
    from corral.terminal import Terminal, parse_detach_keys

    from .remote_io import session
    terminal = Terminal(detach_keys=parse_detach_keys(args.detach_keys))
    try:
        if not args.no_stdin:
            terminal.__enter__()
        session(client, {"type": "ATTACH_CONTAINER_OUTPUT", "attach_container_output": _id(args.container_id)},
                _id(args.container_id)["container_id"], stdin=not args.no_stdin,
                terminal=terminal if terminal.is_tty else None)
    finally:
        terminal.restore()
    end = _wait(client, args.container_id)
    return Termination(container_id=args.container_id, exit_status=end.get("exit_status"),
                       state=end.get("state") or "").shell_exit_code()


def cmd_exec(client: AgentClient, args, command: list[str]) -> int:
    """LAUNCH_NESTED_CONTAINER_SESSION (its answer streams the command's output), our stdin with -i
    through ATTACH_CONTAINER_INPUT to the session's id, and WAIT_NESTED_CONTAINER's exit status:
    as `mesos task exec` does it. The detach keys (with -it) leave, and the agent then ends the
    session, as Mesos's ends one whose client has gone."""
    from corral.terminal import Terminal, parse_detach_keys

    from .remote_io import session
    from .exec import parse_env
    if not command:
        raise InvalidInput("no command: corral exec [OPTIONS] ID -- CMD [ARG...]")
    if args.workdir:
        raise InvalidInput("--workdir does not go through --agent (Mesos's CommandInfo has no working directory)")
    env = parse_env(args.env)
    nested = {"value": f"exec-{os.urandom(6).hex()}", "parent": {"value": args.container_id}}
    info = {"shell": False, "value": command[0], "arguments": command,
            **({"user": args.user} if args.user else {}),
            **({"environment": {"variables": [{"name": k, "type": "VALUE", "value": v} for k, v in env.items()]}}
               if env else {})}
    terminal = Terminal(detach_keys=parse_detach_keys(args.detach_keys))
    try:
        if args.tty and args.interactive:
            terminal.__enter__()
        container = {"type": "MESOS"}
        if args.tty:
            rows, columns = terminal.size() or (24, 80)
            container["tty_info"] = {"window_size": {"rows": rows, "columns": columns}}
        session(client, {"type": "LAUNCH_NESTED_CONTAINER_SESSION", "launch_nested_container_session": {
            "container_id": nested, "command": info, "container": container}},
            nested, stdin=args.interactive, terminal=terminal if terminal.is_tty and args.tty else None)
    finally:
        terminal.restore()
    end = client.call("WAIT_NESTED_CONTAINER", container_id=nested)
    return Termination(container_id=args.container_id, exit_status=end.get("exit_status"), state="").shell_exit_code()


def _running(client: AgentClient, container_id: str) -> bool:
    listed = client.call("GET_CONTAINERS", show_standalone=True, show_nested=True)["containers"]
    return any(c["container_id"]["value"] == container_id for c in listed)


COMMANDS = {"ps": cmd_ps, "wait": cmd_wait, "kill": cmd_kill, "destroy": cmd_destroy,
            "usage": cmd_usage, "logs": cmd_logs, "attach": cmd_attach}


def run(args, command: list[str]) -> int:
    if args.subcommand == "exec":
        return cmd_exec(AgentClient(args.agent), args, command)
    if args.subcommand not in COMMANDS:
        raise InvalidInput(f"corral {args.subcommand} does not go through --agent "
                           f"(these do: {', '.join(sorted([*COMMANDS, 'exec']))})")
    return COMMANDS[args.subcommand](AgentClient(args.agent), args)
