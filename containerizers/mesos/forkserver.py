"""A launch server: a single-threaded process that launches containers for a threaded one.

fork() copies only the calling thread, so a process with threads (the agent: asyncio's
executors, the docker SDK) must not fork supervisors itself. It starts a LaunchServer while
it still has one thread; the server, forked then, keeps the containerizer's code imported and
runs SyncMesosContainerizer.launch for each request. The supervisors are its children, reaped
by the kernel (SIGCHLD ignored): their exits are read from the runtime dir, as always. A
launch also never blocks the client's event loop, the cgroup writes' RCU waits included.

The server outlives any request: a launch that fails, for whatever reason, answers its error
and the next one is served. Should the server end anyway (killed, say), the client starts a
new one, by posix_spawn (safe with threads) of `python -m` this module, which is handed the
socket and the containerizer's arguments: a launch that finds it gone is served by the new
one; the launch it was in answers Unavailable, alone.

Requests and answers are JSON lines over a socketpair:
    -> {"container_id": "...", "config": {...ContainerConfig...}}
    <- {"result": "LAUNCHED"}  or  {"error": "InvalidInput", "message": "..."}
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import signal
import socket
import struct
import sys
import time

from corral.types import ContainerConfig, ContainerExists, CorralError, InvalidInput, Unavailable


class LaunchCutShort(Unavailable):
    """The server ended during this launch: what it made of the container is left as it was."""


def _errors() -> dict[str, type]:
    """The errors an answer may name, rebuilt as themselves on the client's side (any other is
    a CorralError with the server's message)."""
    from corral.provisioner.errors import DigestMismatch, ImageNotFound, InvalidImage, RegistryError

    from .launcher import LaunchFailed
    return {e.__name__: e for e in (InvalidInput, Unavailable, DigestMismatch, ImageNotFound, InvalidImage,
                                    RegistryError, LaunchFailed)}


class LaunchServer:
    """The client side: start() forks the server; launch() asks it to launch a container.
    `hold`: fds the server keeps open while it runs (the agent's lock: a new agent waits until
    the old one's server has finished the launch it was in)."""

    def __init__(self, containerizer_args: tuple, containerizer_kwargs: dict, hold: tuple[int, ...] = ()):
        self._args = (containerizer_args, containerizer_kwargs)
        self._hold = tuple(hold)
        self._sock: socket.socket | None = None
        self.pid: int | None = None
        self._loop = self._lock = None
        self._buffer = b""

    def start(self) -> None:
        if len(os.listdir("/proc/self/task")) > 1:
            raise CorralError("start the launch server before any thread")
        ours, theirs = socket.socketpair()
        self.pid = os.fork()
        if self.pid == 0:
            ours.close()
            try:
                _serve(theirs, *self._args, self._hold)
            finally:
                os._exit(0)
        theirs.close()
        ours.setblocking(False)
        self._sock = ours

    def _running_loop(self):
        """The caller's loop, with a lock of its own (a process may run one loop after another)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._lock = loop, asyncio.Lock()
        return loop

    async def launch(self, container_id: str, config: ContainerConfig) -> str:
        loop = self._running_loop()
        request = json.dumps({"container_id": container_id, "config": config.to_dict()}).encode() + b"\n"
        # The exchange runs to its end even if our caller is cancelled: else its answer would be
        # left for the next caller to read.
        exchange = loop.create_task(self._exchange(loop, request))
        exchange.add_done_callback(lambda t: t.cancelled() or t.exception())    # retrieved if we are gone
        line = await asyncio.shield(exchange)
        answer = json.loads(line)
        if "error" in answer:
            if answer["error"] == "ContainerExists":
                raise ContainerExists(container_id)
            raise _errors().get(answer["error"], CorralError)(answer["message"])
        return answer["result"]

    async def healthy(self) -> bool:
        """Whether a server runs, started anew if the last one ended."""
        loop = self._running_loop()
        async with self._lock:
            try:
                await self._ensure(loop)
            except Unavailable:
                return False
        return True

    async def _exchange(self, loop, request: bytes) -> bytes:
        async with self._lock:            # one request at a time: the server answers in order
            await self._ensure(loop)
            try:
                await loop.sock_sendall(self._sock, request)
            except OSError:               # gone before our request: a new server takes it
                await self._restart(loop)
                await loop.sock_sendall(self._sock, request)
            while b"\n" not in self._buffer:
                chunk = await loop.sock_recv(self._sock, 65536)
                if not chunk:             # gone during our request: it fails alone
                    await self._restart(loop)
                    raise LaunchCutShort("the launch server ended during this launch (a new one serves the next "
                                      "launches): try again")
                self._buffer += chunk
            line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    async def _ensure(self, loop) -> None:
        """A server that has ended (killed, say) is replaced before it is asked anything."""
        ended = self._sock is None
        if not ended:
            try:
                ended = os.waitpid(self.pid, os.WNOHANG)[0] == self.pid
            except ChildProcessError:
                ended = True
            if ended:
                self.pid = None
        if ended:
            await self._restart(loop)

    async def _restart(self, loop) -> None:
        """Reap the server that ended and spawn another (the process has threads: no fork)."""
        self._reap()
        self._buffer = b""
        ours, theirs = socket.socketpair()
        try:
            with theirs:
                # Copied to fds above every source, so that no copy overwrites a source not yet copied.
                sources = (theirs.fileno(), *self._hold)
                targets = range(max(sources) + 1, max(sources) + 1 + len(sources))
                self.pid = os.posix_spawn(sys.executable, [sys.executable, "-m", __spec__.name, *map(str, targets)],
                                          os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, fd, to)
                                                                    for fd, to in zip(sources, targets)])
            ours.setblocking(False)
            arguments = pickle.dumps(self._args)
            await loop.sock_sendall(ours, struct.pack("!Q", len(arguments)) + arguments)
        except OSError as e:
            ours.close()
            raise Unavailable(f"cannot start a new launch server: {e.strerror or e}") from None
        self._sock = ours

    def _reap(self, grace: float | None = None) -> None:
        """Close the connection: the server exits when it reads the end, or at the end of the
        launch it is in; past `grace` seconds it is killed (its half-made container is then a
        stranger that the next agent's recovery destroys)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self.pid:
            deadline = None if grace is None else time.monotonic() + grace
            while os.waitpid(self.pid, 0 if deadline is None else os.WNOHANG)[0] != self.pid:
                if time.monotonic() > deadline:
                    os.kill(self.pid, signal.SIGKILL)
                    deadline = None
                else:
                    time.sleep(0.01)
            self.pid = None

    def stop(self, grace: float = 0.5) -> None:
        """End the server, within `grace` seconds, and reap it."""
        self._reap(grace)


def _serve(sock: socket.socket, args: tuple, kwargs: dict, hold: tuple[int, ...]) -> None:
    from corral.linux import close_fds_except

    from .sync import SyncMesosContainerizer
    # Another LaunchServer's socket, inherited, would keep that server from ever reading its end.
    close_fds_except({sock.fileno(), *hold})
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)     # the kernel reaps the supervisors
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)            # the parent's handlers are not ours
    containerizer = SyncMesosContainerizer(*args, **kwargs)
    with sock, sock.makefile("rwb") as stream:
        for line in stream:
            try:
                request = json.loads(line)
                config = ContainerConfig.from_dict(request["config"])
                answer = {"result": containerizer.launch(request["container_id"], config)}
            except Exception as e:  # noqa: BLE001 - whatever one launch raises, the server serves on
                message = str(e) if isinstance(e, (CorralError, OSError)) else f"{type(e).__name__}: {e}"
                answer = {"error": type(e).__name__, "message": message}
            stream.write(json.dumps(answer).encode() + b"\n")
            stream.flush()


def _serve_spawned(sock_fd: int, *hold: int) -> None:
    """A server spawned in place of one that ended: its socket's fd, then those it holds, in
    argv; the containerizer's arguments come first on the socket."""
    sock = socket.socket(fileno=sock_fd)
    with sock.makefile("rb", buffering=0) as stream:
        size, = struct.unpack("!Q", _read_exactly(stream, 8))
        args, kwargs = pickle.loads(_read_exactly(stream, size))
    _serve(sock, args, kwargs, hold)


def _read_exactly(stream, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            raise SystemExit(0)     # the client went away first
        data += chunk
    return data


if __name__ == "__main__":
    _serve_spawned(*map(int, sys.argv[1:]))
