"""ATTACH_CONTAINER_INPUT and ATTACH_CONTAINER_OUTPUT, Mesos's streaming calls on a container's
I/O (agent.proto; src/slave/http.cpp), translated to and from its switchboard's frames
(containerizers/mesos/switchboard.py). Both need a container that holds its I/O: one launched
with a tty (container.tty_info), as in Mesos.

ATTACH_CONTAINER_OUTPUT: a JSON call; the answer streams the container's output from now on as
RecordIO records (`Accept: application/recordio`, `Message-Accept: application/json`), each a
ProcessIO: DATA (STDOUT or STDERR, base64) or, when quiet for --http_heartbeat_interval, a CONTROL
HEARTBEAT. It ends when the container's output does. (Asked with `Accept: application/json`,
the records come in the same framing, under that type, as Mesos's for backward compatibility.)

ATTACH_CONTAINER_INPUT: the request body is the stream (`Content-Type: application/recordio`,
`Message-Content-Type: application/json`): a first Call whose attach_container_input is of type
CONTAINER_ID, then Calls of type PROCESS_IO: DATA STDIN (an empty one ends stdin, where there is
no tty; with one, send ^D), CONTROL TTY_INFO (the window size) or CONTROL HEARTBEAT. The answer,
200, comes when the body ends (or the container has). One input stream per container at a time (409).

Deadlines, as for every slow client (--http_request_timeout, T): the first record within T of
the headers, then a record within T of the last, or within twice the interval the client's
last heartbeat announced if longer (a quiet terminal sends only heartbeats); else 408. Bad
RecordIO framing, JSON or message: 400. Output a client does not take within T closes its
connection.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json

from aiohttp import web

from corral.containerizers.mesos import switchboard
from corral.types import InvalidInput

from . import recordio
from .shapes import JsonObject, container_id_of

JSON = "application/json"
MESSAGE_CONTENT_TYPE = "Message-Content-Type"
MESSAGE_ACCEPT = "Message-Accept"
MAX_WINDOW = 65535              # rows and columns are 16 bits to the kernel


class _Failed(Exception):
    """Ends an input stream with an HTTP answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _answer(status: int, message: str) -> web.Response:
    response = web.Response(status=status, text=message + "\n")
    if status != 200:
        response.force_close()      # what is left of the body is not read
    return response


def accepts(header: str | None, media_type: str) -> bool:
    """Whether an Accept-style header allows `media_type` (absent: anything, as in Mesos)."""
    if not header:
        return True
    kind = media_type.split("/")[0]
    for item in header.split(","):
        value, *params = (part.strip() for part in item.split(";"))
        if any(p.replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000") for p in params):
            continue
        if value in (media_type, f"{kind}/*", "*/*"):
            return True
    return False


# -- output ----------------------------------------------------------------------------------------

async def attach_container_output(request, agent, call: JsonObject) -> web.StreamResponse:
    accept = request.headers.get("Accept")
    if accepts(accept, recordio.CONTENT_TYPE) and accept:
        content_type = recordio.CONTENT_TYPE
        if not accepts(request.headers.get(MESSAGE_ACCEPT), JSON):
            return _answer(406, f"'{MESSAGE_ACCEPT}' must allow {JSON}: corral's messages are JSON")
    elif accepts(accept, JSON):
        content_type = JSON
        if MESSAGE_ACCEPT in request.headers:
            return _answer(406, f"'{MESSAGE_ACCEPT}' is only for a streaming answer (Accept: {recordio.CONTENT_TYPE})")
    else:
        return _answer(406, f"'Accept' must allow {recordio.CONTENT_TYPE} or {JSON}")
    attachment = await agent.attach(container_id_of(call))
    flags = agent.flags
    try:
        reader, writer = await asyncio.open_unix_connection(sock=attachment.sock)
    except BaseException:
        attachment.close()
        raise
    try:
        headers = {"Content-Type": content_type}
        if content_type == recordio.CONTENT_TYPE:
            headers[MESSAGE_CONTENT_TYPE] = JSON
        response = web.StreamResponse(status=200, headers=headers)
        await _within(request, flags.http_request_timeout, response.prepare(request))
        frames = switchboard.Frames()
        while True:
            try:
                data = await asyncio.wait_for(reader.read(switchboard.READ_SIZE), flags.http_heartbeat_interval)
            except TimeoutError:
                await _within(request, flags.http_request_timeout,
                              response.write(_record(_heartbeat(flags.http_heartbeat_interval))))
                continue
            if not data:
                break
            records = b"".join(_record(_data(kind, payload)) for kind, payload in frames.feed(data))
            await _within(request, flags.http_request_timeout, response.write(records))
        await _within(request, flags.http_request_timeout, response.write_eof())
    except _ClientStalled:
        pass
    finally:
        writer.close()
    return response


class _ClientStalled(Exception):
    pass


async def _within(request, timeout: float, step) -> None:
    """A write to the client within the deadline; past it the connection is dropped, as any
    response the client does not take (api.py's _send)."""
    try:
        async with asyncio.timeout(timeout):
            await step
    except TimeoutError:
        if request.transport is not None:
            request.transport.abort()
        raise _ClientStalled from None


def _record(message: dict) -> bytes:
    return recordio.encode(json.dumps(message, separators=(",", ":")).encode())


def _data(kind: int, payload: bytes) -> dict:
    stream = "STDERR" if kind == switchboard.STDERR else "STDOUT"
    return {"type": "DATA", "data": {"type": stream, "data": base64.b64encode(payload).decode()}}


def _heartbeat(interval: float) -> dict:
    return {"type": "CONTROL", "control": {"type": "HEARTBEAT",
                                           "heartbeat": {"interval": {"nanoseconds": int(interval * 1e9)}}}}


# -- input -----------------------------------------------------------------------------------------

async def attach_container_input(request, agent) -> web.Response:
    message_type = request.headers.get(MESSAGE_CONTENT_TYPE)
    if message_type is None:
        return _answer(400, f"'{MESSAGE_CONTENT_TYPE}' must be set for a streaming request")
    if message_type.split(";")[0].strip() != JSON:
        return _answer(415, f"'{MESSAGE_CONTENT_TYPE}' must be {JSON}: corral's messages are JSON")
    stream = _Records(request, agent.flags.http_request_timeout)
    try:
        first = _input_call(await stream.next())
        if first is None:
            return _answer(400, "the stream ended before its first record")
        if first.get("type", str) != "CONTAINER_ID":
            return _answer(400, "the first record's 'attach_container_input.type' must be CONTAINER_ID")
        if first.object("container_id").data.get("parent") is not None:     # a nested container session's
            from .sessions import SESSIONS
            await request.app[SESSIONS].attach_input(first, _calls(stream))
            return web.Response(status=200)
        container_id = container_id_of(first)
        if container_id in agent.inputs:
            return _answer(409, f"container {container_id} already has an input stream: one at a time")
        attachment = await agent.attach(container_id, stdin=True)
        agent.inputs.add(container_id)
        try:
            await _relay_input(stream, attachment)
        finally:
            agent.inputs.discard(container_id)
            attachment.close()
    except _Failed as e:
        return _answer(e.status, str(e))
    except InvalidInput as e:
        return _answer(400, str(e))         # the rest of the body is dropped with the connection
    return web.Response(status=200)


async def _relay_input(stream: "_Records", attachment) -> None:
    """Each record's frame to the switchboard, until the body ends or the container does."""
    _, writer = await asyncio.open_unix_connection(sock=attachment.sock)
    writer.write(switchboard.frame(switchboard.NO_OUTPUT))     # output is ATTACH_CONTAINER_OUTPUT's
    try:
        while (call := _input_call(await stream.next())) is not None:
            if call.get("type", str) != "PROCESS_IO":
                raise InvalidInput("'attach_container_input.type' must be PROCESS_IO after the first record")
            frame = _frame(call.object("process_io"), stream)
            if frame is None:
                continue
            try:
                writer.write(frame)
                await writer.drain()        # the task takes its input at its own pace
            except (ConnectionError, OSError):
                return                      # the container has ended: its input goes nowhere
    finally:
        writer.close()


async def _calls(stream: "_Records"):
    """The rest of the stream's calls (attach_container_input), each within its deadline."""
    while (call := _input_call(await stream.next())) is not None:
        yield call


def _input_call(raw: bytes | None) -> JsonObject | None:
    if raw is None:
        return None
    try:
        call = JsonObject(json.loads(raw), "")
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise InvalidInput(f"a record is not a JSON Call: {e}") from None
    kind = call.get("type", str)
    if kind != "ATTACH_CONTAINER_INPUT":
        raise _Failed(415, f"a streaming request is only for ATTACH_CONTAINER_INPUT, not {kind!r}")
    return call.object("attach_container_input")


def _frame(io: JsonObject, stream: "_Records") -> bytes | None:
    """A ProcessIO as the switchboard's frame (None: nothing to pass on)."""
    kind = io.get("type", str)
    if kind == "DATA":
        data = io.object("data")
        if data.get("type", str) != "STDIN":
            raise InvalidInput(f"'{data.path('type')}' must be STDIN")
        try:
            payload = base64.b64decode(data.get("data", str, ""), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(f"'{data.path('data')}' is not base64") from None
        return switchboard.frame(switchboard.STDIN, payload)
    if kind == "CONTROL":
        control = io.object("control")
        what = control.get("type", str)
        if what == "TTY_INFO":
            size = control.object("tty_info").object("window_size")
            rows, columns = (size.get(key, int) for key in ("rows", "columns"))
            if rows is None or columns is None or not (0 <= rows <= MAX_WINDOW and 0 <= columns <= MAX_WINDOW):
                raise InvalidInput(f"'{size.where}' needs rows and columns of 0 to {MAX_WINDOW}")
            return switchboard.winsize_frame(rows, columns)
        if what == "HEARTBEAT":
            nanoseconds = control.object("heartbeat").object("interval").get("nanoseconds", int)
            if nanoseconds is not None and nanoseconds > 0:
                stream.heartbeat = nanoseconds / 1e9
            return None
        raise InvalidInput(f"'{control.path('type')}' must be TTY_INFO or HEARTBEAT, not {what!r}")
    raise InvalidInput(f"'{io.path('type')}' must be DATA or CONTROL, not {kind!r}")


class _Records:
    """The request body's records, each within its deadline."""

    def __init__(self, request, timeout: float):
        self.request, self.timeout = request, timeout
        self.decoder = recordio.Decoder()
        self.ready: list[bytes] = []
        self.heartbeat = 0.0            # the interval the client's last heartbeat announced
        self.started = False

    async def next(self) -> bytes | None:
        """The next record; None at the end of the body."""
        while not self.ready:
            limit = max(self.timeout, 2 * self.heartbeat) if self.started else self.timeout
            try:
                async with asyncio.timeout(limit):
                    data = await self.request.content.readany()
            except TimeoutError:
                raise _Failed(408, f"no record arrived within {limit:g}s") from None
            try:
                if not data:
                    self.decoder.close()
                    return None
                self.ready = self.decoder.feed(data)
            except recordio.RecordIOError as e:
                raise _Failed(400, str(e)) from None
        self.started = True
        return self.ready.pop(0)
