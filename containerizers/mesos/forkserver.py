"""A launch server: a single-threaded process that launches containers for a threaded one.

fork() copies only the calling thread, so a process with threads (the agent: asyncio's
executors, the docker SDK) must not fork supervisors itself. It starts a LaunchServer while
it still has one thread; the server, forked then, keeps the containerizer's code imported and
runs SyncMesosContainerizer.launch for each request. The supervisors are its children, reaped
by the kernel (SIGCHLD ignored): their exits are read from the runtime dir, as always. A
launch also never blocks the client's event loop, the cgroup writes' RCU waits included.

Requests and answers are JSON lines over a socketpair:
    -> {"container_id": "...", "config": {...ContainerConfig...}}
    <- {"result": "LAUNCHED"}  or  {"error": "InvalidInput", "message": "..."}
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket

from corral.types import ContainerConfig, ContainerExists, CorralError, InvalidInput

_ERRORS = {"InvalidInput": InvalidInput, "ContainerExists": ContainerExists}


class LaunchServer:
    """The client side: start() forks the server; launch() asks it to launch a container."""

    def __init__(self, containerizer_args: tuple, containerizer_kwargs: dict):
        self._args = (containerizer_args, containerizer_kwargs)
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
                _serve(theirs, *self._args)
            finally:
                os._exit(0)
        theirs.close()
        ours.setblocking(False)
        self._sock = ours

    async def launch(self, container_id: str, config: ContainerConfig) -> str:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._lock = loop, asyncio.Lock()
        request = json.dumps({"container_id": container_id, "config": config.to_dict()}).encode() + b"\n"
        # The exchange runs to its end even if our caller is cancelled: else its answer would be
        # left for the next caller to read.
        line = await asyncio.shield(loop.create_task(self._exchange(loop, request)))
        answer = json.loads(line)
        if "error" in answer:
            raise _ERRORS.get(answer["error"], CorralError)(answer["message"])
        return answer["result"]

    async def _exchange(self, loop, request: bytes) -> bytes:
        async with self._lock:            # one request at a time: the server answers in order
            await loop.sock_sendall(self._sock, request)
            while b"\n" not in self._buffer:
                chunk = await loop.sock_recv(self._sock, 65536)
                if not chunk:
                    raise CorralError("the launch server is gone")
                self._buffer += chunk
            line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def stop(self) -> None:
        """Close the connection; the server exits when it reads the end, and is reaped here."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self.pid:
            os.waitpid(self.pid, 0)
            self.pid = None


def _serve(sock: socket.socket, args: tuple, kwargs: dict) -> None:
    from corral.linux import close_fds_except

    from .sync import SyncMesosContainerizer
    # Another LaunchServer's socket, inherited, would keep that server from ever reading its end.
    close_fds_except({sock.fileno()})
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)     # the kernel reaps the supervisors
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)            # the parent's handlers are not ours
    containerizer = SyncMesosContainerizer(*args, **kwargs)
    with sock, sock.makefile("rwb") as stream:
        for line in stream:
            request = json.loads(line)
            try:
                config = ContainerConfig.from_dict(request["config"])
                answer = {"result": containerizer.launch(request["container_id"], config)}
            except ContainerExists as e:
                answer = {"error": "ContainerExists", "message": str(e)}
            except InvalidInput as e:
                answer = {"error": "InvalidInput", "message": str(e)}
            except (CorralError, OSError) as e:
                answer = {"error": type(e).__name__, "message": str(e)}
            stream.write(json.dumps(answer).encode() + b"\n")
            stream.flush()
