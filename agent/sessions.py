"""Nested container sessions (Mesos v1 agent API): LAUNCH_NESTED_CONTAINER_SESSION runs a command
in a running container, as `corral exec` does, and streams its output back as RecordIO records
of ProcessIO messages (application/recordio, each record JSON as Message-Accept asks); the
response ends when the command has ended. ATTACH_CONTAINER_INPUT to the session's id (its
container_id, with the container as parent) feeds its stdin and sizes its terminal;
WAIT_NESTED_CONTAINER answers its exit status. (agent/attach.py reads ATTACH_CONTAINER_INPUT's
stream, with its deadlines, and hands a session's calls to Sessions.attach_input.)

    -> {"type": "LAUNCH_NESTED_CONTAINER_SESSION", "launch_nested_container_session": {
          "container_id": {"value": "s1", "parent": {"value": "c1"}},
          "command": {"value": "sh"}, "container": {"type": "MESOS", "tty_info": {"window_size": ...}}}}
    <- 200 application/recordio, records {"type": "DATA", "data": {"type": "STDOUT", "data": base64}}

The command runs through `corral exec` itself, spawned (the agent has threads: it may not
fork, and the Mesos containerizer's exec forks) with the agent's dirs and containerizers: the
same code path as the CLI's, whichever containerizer owns the container. With a tty it is the
session leader of a pty of the agent's (setsid, and the pty opened by its path: its controlling
terminal), whose size changes reach it as SIGWINCH; else it gets pipes, which `corral exec`
hands on to the command itself.

A client that stops reading the output for --http_request_timeout, or goes away, ends the
session (SIGTERM, which `corral exec` passes on, then SIGKILL); so does one whose input stream
sends no record (heartbeats count) for as long is cut off (attach.py), the session going on.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import sys

from aiohttp import web

from corral.types import InvalidInput, NoSuchContainer

from . import recordio
from .shapes import JsonObject, config_of, container_id_of, window_size

SESSIONS = web.AppKey("sessions", object)     # the app's Sessions (agent/api.py makes it)
KEEP_ENDED = 256            # exit statuses of ended sessions kept for WAIT_NESTED_CONTAINER
STOP_GRACE = 1.0            # seconds between a session's SIGTERM and its SIGKILL
CHUNK = 65536


class Session:
    """One command and the agent's ends of its stdio: a pty's master, or pipes."""

    def __init__(self, session_id: str, pid: int, stdin: int, outputs: dict[int, str], tty: bool):
        self.id, self.pid, self.stdin, self.outputs, self.tty = session_id, pid, stdin, outputs, tty
        self.pidfd = os.pidfd_open(pid)
        for fd in {stdin, *outputs}:
            os.set_blocking(fd, False)
        self.ended: asyncio.Future = asyncio.get_running_loop().create_future()
        self.input_closed = False
        # Its own task: whatever becomes of the request, the command's end is collected.
        self.reaper = asyncio.ensure_future(_reap(self))

    async def write(self, data: bytes) -> None:
        """Input for the command: whole, waiting for room (a command that does not read holds it)."""
        view = memoryview(data)
        while view and not self.input_closed:
            try:
                view = view[os.write(self.stdin, view):]
            except BlockingIOError:
                await _ready(self.stdin, writable=True)
            except OSError:             # the command closed its input, or ended
                return

    def end_input(self) -> None:
        """The end of the input: the pipe closed; on a terminal, its end-of-file key (^D)."""
        if self.input_closed:
            return
        if self.tty:
            try:
                os.write(self.stdin, b"\x04")
            except OSError:
                pass
        else:
            os.close(self.stdin)
            self.input_closed = True

    def resize(self, rows: int, cols: int) -> None:
        if self.tty:
            from corral.terminal import set_window_size
            set_window_size(self.stdin, rows, cols)

    async def stop(self) -> None:
        """End the command: SIGTERM to `corral exec` (passed on to it), SIGKILL after STOP_GRACE."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.ended.done():
                return
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                return
            try:
                await asyncio.wait_for(asyncio.shield(self.ended), STOP_GRACE)
            except TimeoutError:
                pass

    def close(self) -> None:
        """Once it has ended: let go of the fds."""
        for fd in {self.pidfd, *self.outputs} | (set() if self.input_closed else {self.stdin}):
            os.close(fd)
        self.input_closed = True


class Sessions:
    """The agent's sessions: those running, by id, and the exit statuses of the last that ended."""

    def __init__(self, flags):
        self.flags = flags
        self.active: dict[str, Session] = {}
        self.ended: dict[str, int] = {}

    # -- LAUNCH_NESTED_CONTAINER_SESSION ------------------------------------------------------

    async def launch(self, request: web.Request, call: JsonObject) -> web.StreamResponse:
        _check_accepts(request)
        session_id, parent = _nested_id(call)
        if session_id in self.active or session_id in self.ended:
            raise InvalidInput(f"nested container {parent}.{session_id} exists already")
        config = config_of(call)
        tty = call.object("container").data.get("tty_info") is not None
        size = window_size(call.object("container").object("tty_info")) if tty else None
        session = self._spawn(session_id, parent, config, tty, size)
        self.active[session_id] = session
        response = web.StreamResponse(status=200, headers={"Content-Type": recordio.CONTENT_TYPE,
                                                           "Message-Content-Type": "application/json"})
        try:
            await self._stream(request, response, session)
        except (TimeoutError, ConnectionError):
            if request.transport is not None:
                request.transport.abort()       # a client too slow to read, or gone
        finally:
            await session.stop()                    # a client gone or too slow ends the session
            self._forget(session, await session.ended)
        return response

    def _spawn(self, session_id: str, parent: str, config, tty: bool, size) -> Session:
        argv = [sys.executable, "-m", "corral.cli", *self._global_options(), "exec", "-i"]
        argv += ["-t"] if tty else []
        argv += ["--user", config.user] if config.user else []
        for key, value in config.env.items():
            argv += ["--env", f"{key}={value}"]
        argv += [parent, "--", *config.argv]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
        if tty:
            from corral.terminal import set_window_size
            master, slave = os.openpty()
            try:
                set_window_size(slave, *(size or (24, 80)))
                # setsid, then the pty opened by its path: it becomes the command's controlling terminal.
                actions = [(os.POSIX_SPAWN_OPEN, 0, os.ttyname(slave), os.O_RDWR, 0),
                           (os.POSIX_SPAWN_DUP2, 0, 1), (os.POSIX_SPAWN_DUP2, 0, 2)]
                pid = os.posix_spawn(sys.executable, argv, env, file_actions=actions, setsid=True)
            except BaseException:
                os.close(master)
                raise
            finally:
                os.close(slave)
            return Session(session_id, pid, master, {master: "STDOUT"}, tty=True)
        ends = [os.pipe() for _ in range(3)]
        (stdin_r, stdin_w), (out_r, out_w), (err_r, err_w) = ends
        try:
            actions = [(os.POSIX_SPAWN_DUP2, stdin_r, 0), (os.POSIX_SPAWN_DUP2, out_w, 1),
                       (os.POSIX_SPAWN_DUP2, err_w, 2)]
            pid = os.posix_spawn(sys.executable, argv, env, file_actions=actions, setsid=True)
        except BaseException:
            for fd in (stdin_w, out_r, err_r):
                os.close(fd)
            raise
        finally:
            for fd in (stdin_r, out_w, err_w):
                os.close(fd)
        return Session(session_id, pid, stdin_w, {out_r: "STDOUT", err_r: "STDERR"}, tty=False)

    def _global_options(self) -> list[str]:
        f = self.flags
        options = ["--work-dir", f.work_dir, "--runtime-dir", f.runtime_dir, "--cgroups-root", f.cgroups_root,
                   "--containerizers", ",".join(f.containerizers), "--docker-socket", f.docker_socket]
        if f.external_containerizer_path:
            options += ["--external-containerizer-path", f.external_containerizer_path]
        return options

    async def _stream(self, request, response, session: Session) -> None:
        """The outputs as DATA records until each has ended, then the command's end."""
        timeout = self.flags.http_request_timeout
        async with asyncio.timeout(timeout):
            await response.prepare(request)
        lock = asyncio.Lock()

        async def pump(fd: int, stream: str) -> None:
            while (data := await _read(fd)):
                record = {"type": "DATA", "data": {"type": stream, "data": base64.b64encode(data).decode()}}
                async with lock, asyncio.timeout(timeout):
                    await response.write(recordio.encode(json.dumps(record).encode()))
        await asyncio.gather(*(pump(fd, stream) for fd, stream in session.outputs.items()))
        await asyncio.shield(session.ended)
        async with asyncio.timeout(timeout):
            await response.write_eof()

    def _forget(self, session: Session, status: int) -> None:
        if self.active.get(session.id) is session:
            del self.active[session.id]
            session.close()
            self.ended[session.id] = status
            while len(self.ended) > KEEP_ENDED:
                del self.ended[next(iter(self.ended))]

    async def stop(self) -> None:
        """The agent stops: end every session."""
        await asyncio.gather(*(session.stop() for session in list(self.active.values())))

    # -- ATTACH_CONTAINER_INPUT to a session ---------------------------------------------------

    async def attach_input(self, first: JsonObject, calls) -> None:
        """ATTACH_CONTAINER_INPUT to a session (agent/attach.py reads the stream, its framing and
        deadlines, and hands over the calls): `first` names the session; `calls`, an async
        iterator of the rest, carry ProcessIO (stdin data, an empty one its end; the terminal's
        size; heartbeats)."""
        session_id, parent = _nested_id(first)
        session = self.active.get(session_id)
        if session is None:
            raise NoSuchContainer(f"{parent}.{session_id}")
        async for call in calls:
            if call.get("type", str) != "PROCESS_IO":
                raise InvalidInput("'attach_container_input.type' must be PROCESS_IO after the first record")
            await self._process_io(session, call.object("process_io"))

    async def _process_io(self, session: Session, io: JsonObject) -> None:
        kind = io.get("type", str)
        if kind == "DATA":
            data = io.object("data")
            if data.get("type", str) != "STDIN":
                raise InvalidInput('"process_io.data.type" must be STDIN')
            payload = _base64(data.get("data", str, ""), data.path("data"))
            if payload:
                await session.write(payload)
            else:
                session.end_input()
        elif kind == "CONTROL":
            control = io.object("control")
            if control.get("type", str) == "TTY_INFO":
                size = window_size(control.object("tty_info"))
                if size:
                    session.resize(*size)
            elif control.get("type", str) != "HEARTBEAT":
                raise InvalidInput(f'"{control.path("type")}" must be TTY_INFO or HEARTBEAT')
        else:
            raise InvalidInput(f'"process_io.type" must be DATA or CONTROL, not {kind!r}')

    # -- WAIT_NESTED_CONTAINER -----------------------------------------------------------------

    async def wait(self, call: JsonObject) -> dict:
        session_id, parent = _nested_id(call)
        session = self.active.get(session_id)
        if session is not None:
            return {"exit_status": await asyncio.shield(session.ended)}
        if session_id not in self.ended:
            raise NoSuchContainer(f"{parent}.{session_id}")
        return {"exit_status": self.ended[session_id]}


def _check_accepts(request: web.Request) -> None:
    accept = request.headers.get("Accept", "*/*")
    message = request.headers.get("Message-Accept", "application/json")
    if not _accepts(accept, recordio.CONTENT_TYPE) or not _accepts(message, "application/json"):
        raise web.HTTPNotAcceptable(text="this call streams application/recordio of application/json records\n")


def _accepts(header: str, wanted: str) -> bool:
    kinds = {part.split(";")[0].strip() for part in header.split(",")}
    return bool(kinds & {wanted, "*/*", wanted.split("/")[0] + "/*"})


def _nested_id(call: JsonObject) -> tuple[str, str]:
    """(the session's id, its parent's): Mesos's ContainerID with a parent."""
    session_id = container_id_of(call)
    parent = call.object("container_id").object("parent").get("value", str)
    if parent is None:
        raise InvalidInput('"container_id" of a nested container needs a "parent": {"value": "..."}')
    return session_id, parent


def _base64(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise InvalidInput(f'"{where}" must be base64') from None


async def _ready(fd: int, writable: bool = False) -> None:
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    add, remove = (loop.add_writer, loop.remove_writer) if writable else (loop.add_reader, loop.remove_reader)
    add(fd, lambda: future.done() or future.set_result(None))
    try:
        await future
    finally:
        remove(fd)


async def _read(fd: int) -> bytes:
    """What the command wrote, b"" at its end (EOF; EIO: a pty whose every slave is closed)."""
    while True:
        try:
            return os.read(fd, CHUNK)
        except BlockingIOError:
            await _ready(fd)
        except OSError:
            return b""


async def _reap(session: Session) -> None:
    await _ready(session.pidfd)
    _, status = os.waitpid(session.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    # As Mesos's exit_status, a wait status: `corral exec`'s exit code is the command's (128+N
    # for a death by signal N), which is what can be told.
    session.ended.set_result(((code if code >= 0 else 128 - code) & 0xFF) << 8)

