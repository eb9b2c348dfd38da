"""dockerd's Engine API: the calls the docker containerizer makes, by name, over one of the two
transports of transport.py (the docker SDK's client, or plain HTTP on dockerd's unix socket).

Pulls always go through the SDK (registry credentials); they take seconds anyway.
dockerd's failures reach the caller as corral's errors (transport.py): NotFound (404),
EngineError (any other error answer) and DockerUnavailable (refused, gone or silent), each one line.
"""

from __future__ import annotations

import json
import os

from .transport import DockerUnavailable, EngineError, NotFound, Refused, SdkTransport, SocketTransport, TimedOut

__all__ = ["DEFAULT_SOCKET", "default_socket", "Engine", "EngineError", "NotFound", "Refused", "DockerUnavailable",
           "TimedOut"]

DEFAULT_SOCKET = "unix:///var/run/docker.sock"


def default_socket() -> str:
    """--docker-socket's default: DOCKER_HOST, else the standard socket (never a CLI context)."""
    return os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET


class Engine:
    """The Engine API calls, by name; `transport` carries them."""

    def __init__(self, url: str, timeout: float = 30.0, sdk: bool = True):
        """`sdk`: False takes the standard-library transport where it can (a unix socket)."""
        self.url = url
        self.timeout = timeout
        if not sdk and url.startswith("unix://"):
            self.transport = SocketTransport(url, timeout)
        else:
            self.transport = SdkTransport(url, timeout)

    def call(self, method: str, path: str, query: dict | None = None, body=None, timeout: float | None = None):
        """One call; its JSON answer (None when there is none)."""
        answer = self.transport.request(method, path, query, body, timeout or self.timeout)
        return json.loads(answer) if answer.strip() else None

    def create(self, name: str, config: dict) -> str:
        return self.call("POST", "/containers/create", {"name": name}, config)["Id"]

    def start(self, docker_id: str) -> None:
        self.call("POST", f"/containers/{docker_id}/start")

    def wait(self, docker_id: str, timeout: float | None = None) -> bool:
        """Block until the container is not running: True; False if `timeout` seconds pass first."""
        try:
            self.call("POST", f"/containers/{docker_id}/wait", {"condition": "not-running"},
                      timeout=timeout or 365 * 86400.0)
        except TimedOut:
            if timeout is None:
                raise
            return False
        return True

    def inspect(self, docker_id: str) -> dict | None:
        """The container as dockerd sees it; None when dockerd does not have it."""
        try:
            return self.call("GET", f"/containers/{docker_id}/json")
        except NotFound:
            return None

    def kill(self, docker_id: str, sig: int) -> None:
        self.call("POST", f"/containers/{docker_id}/kill", {"signal": int(sig)})

    def remove(self, docker_id: str) -> None:
        """Remove the container and its anonymous volumes, running or not; gone already is fine."""
        try:
            self.call("DELETE", f"/containers/{docker_id}", {"v": 1, "force": 1})
        except NotFound:
            pass

    def update(self, docker_id: str, limits: dict) -> None:
        self.call("POST", f"/containers/{docker_id}/update", body=limits)

    def stats(self, docker_id: str) -> dict:
        return self.call("GET", f"/containers/{docker_id}/stats", {"stream": 0, "one-shot": 1})

    def processes(self, docker_id: str) -> int:
        return len(self.call("GET", f"/containers/{docker_id}/top", {"ps_args": "-o pid"})["Processes"] or [])

    def containers(self, labels: list[str]) -> list[dict]:
        """Every container, running or not, that carries all of `labels` (NAME or NAME=VALUE)."""
        return self.call("GET", "/containers/json", {"all": 1, "filters": json.dumps({"label": labels})})

    def pull(self, image: str) -> None:
        """Through the SDK whatever the transport: it knows the user's registry credentials."""
        sdk = self.transport if isinstance(self.transport, SdkTransport) else SdkTransport(self.url, self.timeout)
        with sdk.errors():
            sdk.sdk().pull(image)

    def exec_create(self, docker_id: str, config: dict) -> str:
        return self.call("POST", f"/containers/{docker_id}/exec", body=config)["Id"]

    def exec_start(self, exec_id: str, tty: bool):
        """Start the exec on a hijacked connection (hijack.py): (the socket, what came after the
        answer's head): its output (raw with tty, else in frames) and, written to, its stdin."""
        return self._hijack("exec", f"/exec/{exec_id}/start", body={"Detach": False, "Tty": tty})

    def exec_resize(self, exec_id: str, rows: int, cols: int) -> None:
        self.call("POST", f"/exec/{exec_id}/resize", {"h": rows, "w": cols})

    def exec_inspect(self, exec_id: str) -> dict:
        return self.call("GET", f"/exec/{exec_id}/json")

    def attach(self, docker_id: str, stdin: bool, detach_keys: str | None = None):
        """Attach to the container's streams from now on (before its start: all of them), on a
        hijacked connection as exec_start's; its stdin with `stdin` (the container's OpenStdin),
        watched by dockerd for `detach_keys` (with a tty; None: its default, ctrl-p,ctrl-q)."""
        query = {"stream": 1, "stdin": int(stdin), "stdout": 1, "stderr": 1,
                 **({"detachKeys": detach_keys} if detach_keys else {})}
        return self._hijack("attach", f"/containers/{docker_id}/attach", query=query)

    def resize(self, docker_id: str, rows: int, cols: int) -> None:
        self.call("POST", f"/containers/{docker_id}/resize", {"h": rows, "w": cols})

    def _hijack(self, what: str, path: str, query: dict | None = None, body=None):
        if not isinstance(self.transport, SocketTransport):
            raise EngineError(f"{what} through dockerd at {self.url} needs a unix socket "
                              "(give --docker-socket unix://...)")
        return self.transport.hijack("POST", path, query, body, self.timeout)

    def output(self, docker_id: str, follow: bool, tty: bool = False):
        """(stream, bytes) pairs of the container's output from its start (1 stdout, 2 stderr),
        decoded from dockerd's multiplexed frames; with follow, until the container ends. A
        container with a tty has one stream, which dockerd sends raw: all of it is stdout."""
        body = self.transport.stream("GET", f"/containers/{docker_id}/logs",
                                     {"stdout": 1, "stderr": 1, "follow": int(follow)},
                                     None if follow else self.timeout)
        with body:
            if tty:
                while chunk := body.read1(65536):
                    yield 1, chunk
                return
            while len(header := _read_exactly(body, 8)) == 8:
                yield header[0], _read_exactly(body, int.from_bytes(header[4:], "big"))


def _read_exactly(body, size: int) -> bytes:
    """`size` bytes, fewer only at the end of the stream."""
    data = body.read(size)
    while data and len(data) < size:
        more = body.read(size - len(data))
        if not more:
            break
        data += more
    return data
