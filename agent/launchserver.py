"""The launch server: a single-threaded process that forks every container's supervisor.

fork() copies only the calling thread: a lock another thread held at that moment stays held
for ever in the child. So the launcher refuses to fork from a process with threads
(containers/mesos/launcher.py), and the agent, whose process may gain threads (asyncio's
getaddrinfo executor, an HTTP client, the docker SDK), forks this server at start, before any
thread exists, and launches through it.

The server only runs SyncMesosContainerizer.launch. Everything else (wait, kill, destroy) works
from each container's files, so the agent does it itself. Requests and answers are JSON
messages on a SOCK_SEQPACKET socketpair, one launch at a time. The server reaps the supervisors
it forked, and exits when the agent closes the socket, or dies.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket

from corral.types import ContainerConfig, ContainerExists, CorralError, InvalidInput

MAX_MESSAGE = 1 << 20
REAP_INTERVAL = 1.0


class LaunchServer:
    def __init__(self, pid: int, sock: socket.socket):
        self.pid = pid
        self.sock = sock
        self._lock = asyncio.Lock()

    @classmethod
    def start(cls, **containerizer_args) -> "LaunchServer":
        """Fork the server; `containerizer_args` are SyncMesosContainerizer's."""
        if len(os.listdir("/proc/self/task")) > 1:
            raise CorralError("the launch server must be started before any thread")
        agent_end, server_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            agent_end.close()
            code = 1
            try:
                _serve(server_end, containerizer_args)
                code = 0
            finally:
                os._exit(code)
        server_end.close()
        agent_end.setblocking(False)
        return cls(pid, agent_end)

    async def launch(self, container_id: str, config: ContainerConfig) -> str:
        """LAUNCHED or NOT_SUPPORTED; raises what the launch raised (as InvalidInput,
        ContainerExists or CorralError)."""
        request = json.dumps({"id": container_id, "config": config.to_dict()}).encode()
        # Shielded: a caller cancelled halfway must not leave its answer in the socket for the next one.
        raw = await asyncio.shield(asyncio.ensure_future(self._exchange(request)))
        if not raw:
            raise CorralError("the launch server has gone")
        answer = json.loads(raw)
        if "result" in answer:
            return answer["result"]
        if answer["error"] == "ContainerExists":
            raise ContainerExists(container_id)
        raise (InvalidInput if answer["error"] == "InvalidInput" else CorralError)(answer["message"])

    async def _exchange(self, request: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        async with self._lock:
            await loop.sock_sendall(self.sock, request)
            return await loop.sock_recv(self.sock, MAX_MESSAGE)

    def close(self) -> None:
        """Close the socket; the server exits when it sees that. Reap it."""
        if self.sock.fileno() >= 0:
            self.sock.close()
            os.waitpid(self.pid, 0)


def _serve(sock: socket.socket, containerizer_args: dict) -> None:
    from containerizers.mesos.sync import SyncMesosContainerizer
    signal.signal(signal.SIGINT, signal.SIG_IGN)       # the agent decides when to stop
    containerizer = SyncMesosContainerizer(**containerizer_args)
    sock.settimeout(REAP_INTERVAL)
    while True:
        try:
            raw = sock.recv(MAX_MESSAGE)
        except socket.timeout:
            _reap()
            continue
        if not raw:
            return
        sock.sendall(json.dumps(_launch(containerizer, raw)).encode())
        _reap()


def _launch(containerizer, raw: bytes) -> dict:
    try:
        request = json.loads(raw)
        return {"result": containerizer.launch(request["id"], ContainerConfig.from_dict(request["config"]))}
    except ContainerExists as e:
        return {"error": "ContainerExists", "message": str(e)}
    except InvalidInput as e:
        return {"error": "InvalidInput", "message": str(e)}
    except Exception as e:  # noqa: BLE001 - whatever failed, the agent gets it as one line
        return {"error": type(e).__name__, "message": str(e) or type(e).__name__}


def _reap() -> None:
    """Collect the supervisors that have exited: this process is their parent."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
