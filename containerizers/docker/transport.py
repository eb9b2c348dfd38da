"""How a call reaches dockerd, and how its failures come back: the two transports of the Engine
API (engine.py), and the errors they raise.

    SdkTransport     the docker SDK's client: every DOCKER_HOST kind (unix, tcp, TLS, ssh). The
                     agent's, and the tests' reference.
    SocketTransport  plain HTTP/1.0 on dockerd's unix socket, in the standard library. The CLI's:
                     importing the SDK (requests, urllib3, ssl, email) costs ~150 ms, more than a
                     whole `docker run`, and http.client alone ~45 ms. HTTP/1.0 keeps it small:
                     dockerd answers each request on its own connection and ends the body by
                     closing it, streams included, so nothing is chunked or kept alive.

Each answers NotFound (404), Refused (400), EngineError (any other error answer), TimedOut and
DockerUnavailable (refused, gone or silent), each one line.
"""

from __future__ import annotations

import json
import socket

from corral.types import CorralError, InvalidInput, Unavailable

# Pinned, so that making a client costs no round trip: 1.41 is dockerd 20.10 (Debian 12's), and
# later dockerds still speak it.
API_VERSION = "1.41"


class EngineError(CorralError):
    """dockerd answered a call with an error."""


class NotFound(EngineError):
    """dockerd has no such container (or, for a create, no such image)."""


class Refused(EngineError, InvalidInput):
    """dockerd refused the call as malformed (HTTP 400: an invalid image reference, say)."""


_ERRORS = {400: Refused, 404: NotFound}      # by dockerd's HTTP status


class DockerUnavailable(Unavailable):
    """dockerd is down, unreachable or too slow: the container's state is unknown, not changed."""


class TimedOut(DockerUnavailable):
    """No answer within the time given: the caller's own timeout, or a silent dockerd."""


class SocketTransport:
    """HTTP/1.0 over dockerd's unix socket: one connection per call, the answer read to its end."""

    def __init__(self, url: str, timeout: float):
        self.url = url
        self.path = url[len("unix://"):]
        self.timeout = timeout

    def request(self, method: str, path: str, query, body, timeout: float) -> bytes:
        with self.stream(method, path, query, timeout, body) as answer:
            try:
                return answer.read()
            except TimeoutError:
                raise self._timed_out(timeout) from None

    def stream(self, method: str, path: str, query, timeout: float | None, body=None):
        """The answer's body as a file, after its status said success; reads time out after `timeout`."""
        sock = self._send(method, path, query, body, timeout, "HTTP/1.0")
        try:
            answer = sock.makefile("rb")
            status = _status(answer.readline())
            while answer.readline() not in (b"\r\n", b"\n", b""):
                pass                            # headers: HTTP/1.0 bodies end where the connection does
        except BaseException as e:
            sock.close()
            raise self._failure(e, timeout) from None
        sock.close()        # the file holds the connection now
        if status >= 400:
            with answer:
                raise _error(status, answer.read(), self.url)
        return answer

    def hijack(self, method: str, path: str, query, body, timeout: float):
        """A call whose connection dockerd then hands to a stream both ways (exec start, attach):
        (the socket, blocking, no timeout; the stream's bytes read with the answer's head)."""
        sock = self._send(method, path, query, body, timeout, "HTTP/1.1", "Connection: Upgrade\r\nUpgrade: tcp\r\n")
        try:
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
            head, _, rest = answer.partition(b"\r\n\r\n")
            status = _status(head.split(b"\r\n", 1)[0])
            if status >= 400:
                while chunk := sock.recv(65536):
                    rest += chunk
                raise _error(status, rest, self.url)
            sock.settimeout(None)
        except BaseException as e:
            sock.close()
            raise self._failure(e, timeout) from None
        return sock, rest

    def _send(self, method: str, path: str, query, body, timeout: float | None, version: str,
              headers: str = "") -> socket.socket:
        """A connection to dockerd with the request sent on it; its reads time out after `timeout`."""
        data = b"" if body is None else json.dumps(body).encode()
        target = f"/v{API_VERSION}{path}" + (f"?{_query(query)}" if query else "")
        head = (f"{method} {target} {version}\r\nHost: docker\r\nContent-Type: application/json\r\n"
                f"{headers}Content-Length: {len(data)}\r\n\r\n").encode()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.settimeout(timeout)
            sock.connect(self.path)
            sock.sendall(head + data)
        except BaseException as e:
            sock.close()
            raise self._failure(e, timeout) from None
        return sock

    def _failure(self, error: BaseException, timeout: float | None) -> BaseException:
        """What a call raises for `error`: TimedOut, DockerUnavailable, or the error itself (dockerd's own)."""
        if isinstance(error, TimeoutError):
            return self._timed_out(timeout)
        if isinstance(error, OSError):
            return DockerUnavailable(f"dockerd at {self.url} is not reachable ({error.strerror or error})")
        return error

    def _timed_out(self, timeout: float | None) -> TimedOut:
        return TimedOut(f"dockerd at {self.url} did not answer within {timeout:g}s")


class SdkTransport:
    """The docker SDK's low-level client (a requests session with the SDK's adapters)."""

    def __init__(self, url: str, timeout: float):
        self.url = url
        self.timeout = timeout
        self._client = None

    def sdk(self):
        if self._client is None:
            import docker
            with self.errors():
                self._client = docker.APIClient(base_url=self.url, version=API_VERSION, timeout=self.timeout)
        return self._client

    def request(self, method: str, path: str, query, body, timeout: float) -> bytes:
        with self.errors(timeout):
            answer = self._send(method, path, query, body, timeout, stream=False)
            return answer.content

    def stream(self, method: str, path: str, query, timeout: float | None):
        with self.errors(timeout):
            answer = self._send(method, path, query, None, timeout, stream=True)
        return _SdkStream(answer, self, timeout)

    def _send(self, method, path, query, body, timeout, stream: bool):
        client = self.sdk()
        answer = client.request(method, f"{client.base_url}/v{API_VERSION}{path}", params=query,
                                json=body, timeout=timeout, stream=stream)
        if answer.status_code >= 400:
            raise _error(answer.status_code, answer.content, self.url)
        return answer

    def errors(self, timeout: float | None = None):
        return _SdkErrors(self, timeout)


class _SdkErrors:
    """requests' and the SDK's exceptions as corral's: the innermost reason, one line."""

    def __init__(self, transport: SdkTransport, timeout: float | None):
        self.transport, self.timeout = transport, timeout

    def __enter__(self):
        return self

    def __exit__(self, kind, error, _traceback):
        if error is None or isinstance(error, CorralError):
            return False
        import docker.errors
        import requests.exceptions as rex
        url = self.transport.url
        if isinstance(error, docker.errors.APIError):
            kind = _ERRORS.get(error.status_code, EngineError)
            raise kind(f"dockerd at {url}: {error.explanation or error}") from None
        if isinstance(error, docker.errors.DockerException):
            raise EngineError(f"docker: {error}") from None
        if isinstance(error, (rex.ConnectionError, rex.Timeout, rex.ChunkedEncodingError)):
            if _timed_out(error):
                raise TimedOut(f"dockerd at {url} did not answer within {self.timeout or 0:g}s") from None
            raise DockerUnavailable(f"dockerd at {url} is not reachable ({_root_cause(error)})") from None
        return False


class _SdkStream:
    """A streamed answer's body, read as a file; its errors as corral's."""

    def __init__(self, answer, transport: SdkTransport, timeout: float | None):
        self.answer, self.transport, self.timeout = answer, transport, timeout

    def read(self, size: int = -1) -> bytes:
        with self.transport.errors(self.timeout):
            return self.answer.raw.read(None if size < 0 else size)

    def read1(self, size: int) -> bytes:
        """What has come, up to `size` bytes (at least one, but at the end)."""
        with self.transport.errors(self.timeout):
            return self.answer.raw.read1(size)

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.answer.close()


_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _query(query: dict) -> str:
    """A URL's query string, every byte but the unreserved ones percent-encoded: urllib.parse's
    urlencode, without the import."""
    def encode(value) -> str:
        return "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in str(value).encode())
    return "&".join(f"{encode(key)}={encode(value)}" for key, value in query.items())


def _status(line: bytes) -> int:
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise DockerUnavailable(f"not an HTTP answer from dockerd: {line[:60]!r}")
    return int(parts[1])


def _error(status: int, body: bytes, url: str) -> EngineError:
    """dockerd's error answer ({"message": ...}) as an exception."""
    try:
        message = json.loads(body)["message"]
    except (ValueError, KeyError, TypeError):
        message = body.decode(errors="replace").strip() or f"HTTP {status}"
    return _ERRORS.get(status, EngineError)(f"dockerd at {url}: {message}")


def _causes(error: BaseException):
    """An error and the errors that requests and urllib3 wrapped inside it, outermost first."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        inner = getattr(error, "reason", None)
        if not isinstance(inner, BaseException):
            inner = next((a for a in error.args if isinstance(a, BaseException)), error.__cause__)
        error = inner


def _timed_out(error: BaseException) -> bool:
    import requests.exceptions as rex
    import urllib3.exceptions
    causes = list(_causes(error))
    # urllib3's NewConnectionError (a refused connection) is, for history's sake, a timeout class.
    if any(isinstance(e, urllib3.exceptions.NewConnectionError) for e in causes):
        return False
    return any(isinstance(e, (TimeoutError, rex.Timeout, urllib3.exceptions.TimeoutError)) for e in causes)


def _root_cause(error: BaseException) -> str:
    """The innermost reason: 'Connection refused', not a chain of reprs."""
    *_, error = _causes(error)
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error).strip() or type(error).__name__
