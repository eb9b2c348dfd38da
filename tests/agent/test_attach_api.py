"""ATTACH_CONTAINER_INPUT and ATTACH_CONTAINER_OUTPUT, from a client written here as a Mesos
client (the Mesos CLI's `task attach`) speaks them: RecordIO streams of JSON Calls and ProcessIO
messages, over real HTTP, to a container with a real pseudo-terminal."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import textwrap

from corral.agent import recordio
from tests.agent.agentkit import InProcessAgent

TIMEOUT = 0.5
RECORDIO = {"Content-Type": "application/recordio", "Message-Content-Type": "application/json"}
OUTPUT = {"Content-Type": "application/json", "Accept": "application/recordio", "Message-Accept": "application/json"}

# Waits for a line, then says what it sees of its terminal; SIGWINCH and ^C as a terminal's program.
TASK = textwrap.dedent("""
    import fcntl, os, signal, struct, sys, termios
    def size():
        return "%dx%d" % struct.unpack("HHHH", fcntl.ioctl(0, termios.TIOCGWINSZ, bytes(8)))[:2]
    signal.signal(signal.SIGWINCH, lambda *_: os.write(1, ("resized " + size() + "\\n").encode()))
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    line = sys.stdin.readline().strip()
    os.write(1, f"tty {os.isatty(0)} size {size()} read {line}\\n".encode())
    while True:
        signal.pause()
""")


def launch(container_id: str, argv: list[str], tty: bool = True) -> dict:
    container = {"type": "MESOS", **({"tty_info": {}} if tty else {})}
    return {"type": "LAUNCH_CONTAINER", "launch_container": {
        "container_id": {"value": container_id}, "container": container,
        "command": {"shell": False, "value": argv[0], "arguments": argv}}}


def input_call(process_io: dict | None = None, container_id: str | None = None) -> bytes:
    if container_id is not None:
        inner = {"type": "CONTAINER_ID", "container_id": {"value": container_id}}
    else:
        inner = {"type": "PROCESS_IO", "process_io": process_io}
    return recordio.encode(json.dumps({"type": "ATTACH_CONTAINER_INPUT", "attach_container_input": inner}).encode())


def stdin(data: bytes) -> bytes:
    return input_call({"type": "DATA", "data": {"type": "STDIN", "data": base64.b64encode(data).decode()}})


def window(rows: int, columns: int) -> bytes:
    return input_call({"type": "CONTROL", "control": {"type": "TTY_INFO",
                                                        "tty_info": {"window_size": {"rows": rows, "columns": columns}}}})


HEARTBEAT = input_call({"type": "CONTROL", "control": {"type": "HEARTBEAT",
                                                        "heartbeat": {"interval": {"nanoseconds": 10**9}}}})


def output_call(container_id: str) -> str:
    return json.dumps({"type": "ATTACH_CONTAINER_OUTPUT",
                       "attach_container_output": {"container_id": {"value": container_id}}})


async def post_stream(a: InProcessAgent, records: asyncio.Queue, headers=RECORDIO):
    """POST a streaming body fed from `records` (None ends it); (status, text)."""
    async def body():
        while (record := await records.get()) is not None:
            yield record
    async with a.http.post(a.url + "/api/v1", data=body(), headers=headers) as r:
        return r.status, await r.text()


async def read_output(response) -> list[dict]:
    """Every ProcessIO record of an ATTACH_CONTAINER_OUTPUT answer, until it ends."""
    decoder, messages = recordio.Decoder(), []
    async for chunk in response.content.iter_any():
        messages += [json.loads(record) for record in decoder.feed(chunk)]
    decoder.close()
    return messages


def stdout_of(messages: list[dict]) -> bytes:
    return b"".join(base64.b64decode(m["data"]["data"]) for m in messages
                    if m["type"] == "DATA" and m["data"]["type"] == "STDOUT")


def test_an_interactive_session_over_recordio(agent_flags):
    async def scenario():
        async with InProcessAgent(agent_flags()) as a:
            assert (await a.call(launch("term", [sys.executable, "-c", TASK])))[0] == 200
            async with a.http.post(a.url + "/api/v1", data=output_call("term"), headers=OUTPUT) as out:
                assert out.status == 200
                assert out.headers["Content-Type"] == "application/recordio"
                assert out.headers["Message-Content-Type"] == "application/json"
                reading = asyncio.ensure_future(read_output(out))
                records: asyncio.Queue = asyncio.Queue()
                sending = asyncio.ensure_future(post_stream(a, records))
                for record in (input_call(container_id="term"), window(50, 120), HEARTBEAT, stdin(b"hello\r")):
                    await records.put(record)
                await asyncio.sleep(1)
                await records.put(window(51, 121))
                await asyncio.sleep(1)
                await records.put(stdin(b"\x03"))      # ^C, through the task's terminal
                await records.put(None)
                assert await asyncio.wait_for(sending, 30) == (200, "")
                messages = await asyncio.wait_for(reading, 30)
            text = stdout_of(messages)
            assert b"tty True size 50x120 read hello\r\n" in text, text
            assert b"resized 51x121" in text, text
            status, answer = await a.call({"type": "WAIT_CONTAINER",
                                           "wait_container": {"container_id": {"value": "term"}}})
            assert status == 200 and answer["wait_container"]["exit_status"] == 2, answer      # SIGINT's wait status
            # Everything went to its sandbox's stdout too (GET /files/read, corral logs).
            assert (await a.call({"type": "REMOVE_CONTAINER",
                                  "remove_container": {"container_id": {"value": "term"}}}))[0] == 200
    asyncio.run(scenario())


def test_output_heartbeats_and_the_end_of_stdin(agent_flags):
    async def scenario():
        async with InProcessAgent(agent_flags("--http_heartbeat_interval=0.2")) as a:
            argv = ["/bin/sh", "-c", "sleep 1; cat; echo done >&2"]
            assert (await a.call(launch("quiet", argv)))[0] == 200
            async with a.http.post(a.url + "/api/v1", data=output_call("quiet"), headers=OUTPUT) as out:
                reading = asyncio.ensure_future(read_output(out))
                records: asyncio.Queue = asyncio.Queue()
                for record in (input_call(container_id="quiet"), stdin(b"abc\n"), stdin(b"\x04"), None):
                    records.put_nowait(record)          # with a tty, ^D ends cat's input
                assert await post_stream(a, records) == (200, "")
                messages = await asyncio.wait_for(reading, 30)
            heartbeats = [m for m in messages if m["type"] == "CONTROL"]
            assert heartbeats and heartbeats[0] == {"type": "CONTROL", "control": {
                "type": "HEARTBEAT", "heartbeat": {"interval": {"nanoseconds": 200000000}}}}
            assert b"abc\r\nabc\r\n" in stdout_of(messages) and b"done" in stdout_of(messages)   # a tty: one stream
            status, answer = await a.call({"type": "WAIT_CONTAINER",
                                           "wait_container": {"container_id": {"value": "quiet"}}})
            assert status == 200 and answer["wait_container"]["exit_status"] == 0
            await a.call({"type": "REMOVE_CONTAINER", "remove_container": {"container_id": {"value": "quiet"}}})
    asyncio.run(scenario())


def test_bad_requests(agent_flags):
    async def scenario():
        async with InProcessAgent(agent_flags()) as a:
            assert (await a.call(launch("plain", ["sleep", "30"], tty=False)))[0] == 200
            assert (await a.call(launch("term", ["sleep", "30"])))[0] == 200

            async def stream(*records: bytes, headers=RECORDIO):
                queue: asyncio.Queue = asyncio.Queue()
                for record in (*records, None):
                    queue.put_nowait(record)
                return await post_stream(a, queue, headers)
            assert await stream(b"12x\n{}") == (400, "bad RecordIO framing: a record's length is not a decimal "
                                                     "number: b'12x'\n")
            assert await stream(b"100\n{}") == (400, "bad RecordIO framing: the stream ended inside a record\n")
            assert await stream(recordio.encode(b"{nope")) == (400, "a record is not a JSON Call: Expecting property "
                                                                    "name enclosed in double quotes: line 1 column 2 "
                                                                    "(char 1)\n")
            assert (await stream(input_call(container_id="term"), headers={"Content-Type": "application/recordio"})
                    == (400, "'Message-Content-Type' must be set for a streaming request\n"))
            assert (await stream(input_call(container_id="term"),
                                 headers={**RECORDIO, "Message-Content-Type": "application/x-protobuf"})
                    == (415, "'Message-Content-Type' must be application/json: corral's messages are JSON\n"))
            assert (await stream(recordio.encode(b'{"type": "GET_HEALTH"}'))
                    == (415, "a streaming request is only for ATTACH_CONTAINER_INPUT, not 'GET_HEALTH'\n"))
            assert (await stream(window(1, 1))
                    == (400, "the first record's 'attach_container_input.type' must be CONTAINER_ID\n"))
            assert await stream(input_call(container_id="nobody")) == (404, "no such container: nobody\n")
            assert await stream(input_call(container_id="plain")) == (
                400, "container plain has no I/O to attach to: launch it with a tty (container.tty_info)\n")
            status, text = await stream(input_call(container_id="term"), stdin(b"x")[:-1] + b"!")
            assert (status, text.split(":")[0]) == (400, "a record is not a JSON Call")
            assert await stream(input_call(container_id="term"), window(70000, 1)) == (
                400, "'attach_container_input.process_io.control.tty_info.window_size' needs rows and columns of "
                     "0 to 65535\n")
            assert await stream(input_call(container_id="term"),
                                input_call({"type": "DATA", "data": {"type": "STDIN", "data": "%%%"}})) == (
                400, "'attach_container_input.process_io.data.data' is not base64\n")
            # One input stream at a time, as Mesos's switchboard.
            first: asyncio.Queue = asyncio.Queue()
            first.put_nowait(input_call(container_id="term"))
            holding = asyncio.ensure_future(post_stream(a, first))
            await asyncio.sleep(0.5)
            assert await stream(input_call(container_id="term")) == (
                409, "container term already has an input stream: one at a time\n")
            first.put_nowait(None)
            assert await holding == (200, "")
            # A JSON ATTACH_CONTAINER_INPUT; an output to a container without I/O; answers it cannot take.
            status, text = await a.call({"type": "ATTACH_CONTAINER_INPUT", "attach_container_input": {}})
            assert (status, text) == (415, "ATTACH_CONTAINER_INPUT is a stream: send application/recordio\n")
            async with a.http.post(a.url + "/api/v1", data=output_call("plain"), headers=OUTPUT) as r:
                assert r.status == 400
            async with a.http.post(a.url + "/api/v1", data=output_call("term"),
                                   headers={**OUTPUT, "Accept": "text/plain"}) as r:
                assert (r.status, await r.text()) == (406, "'Accept' must allow application/recordio or "
                                                           "application/json\n")
            async with a.http.post(a.url + "/api/v1", data=output_call("term"),
                                   headers={**OUTPUT, "Message-Accept": "application/x-protobuf"}) as r:
                assert r.status == 406
            for cid in ("plain", "term"):
                await a.call({"type": "KILL_CONTAINER", "kill_container": {"container_id": {"value": cid}}})
                await a.call({"type": "WAIT_CONTAINER", "wait_container": {"container_id": {"value": cid}}})
                await a.call({"type": "REMOVE_CONTAINER", "remove_container": {"container_id": {"value": cid}}})
    asyncio.run(scenario())


def test_a_session_that_sends_nothing_meets_the_deadlines(agent_flags):
    """A client that sends the headers and then nothing, or the container's id and then nothing,
    is answered 408 after --http_request_timeout and closed; the others are served meanwhile."""
    async def scenario():
        async with InProcessAgent(agent_flags(f"--http_request_timeout={TIMEOUT}")) as a:
            assert (await a.call(launch("term", ["sleep", "30"])))[0] == 200
            loop = asyncio.get_running_loop()
            host, port = a.url.rsplit("/", 1)[1].split(":")
            for first in (b"", input_call(container_id="term")):
                reader, writer = await asyncio.open_connection(host, int(port))
                start = loop.time()
                writer.write(b"POST /api/v1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/recordio\r\n"
                             b"Message-Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
                if first:
                    writer.write(b"%x\r\n%s\r\n" % (len(first), first))
                health = await a.call({"type": "GET_HEALTH"})
                received = await asyncio.wait_for(reader.read(), 10)
                after = loop.time() - start
                writer.close()
                head, _, body = received.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 408 ") and body == f"no record arrived within {TIMEOUT:g}s\n".encode()
                assert TIMEOUT <= after < TIMEOUT + 2 and health[0] == 200
            await a.call({"type": "KILL_CONTAINER", "kill_container": {"container_id": {"value": "term"}}})
            await a.call({"type": "WAIT_CONTAINER", "wait_container": {"container_id": {"value": "term"}}})
            await a.call({"type": "REMOVE_CONTAINER", "remove_container": {"container_id": {"value": "term"}}})
    asyncio.run(scenario())


def test_a_launch_with_a_window_size_gives_the_terminal_that_size(agent_flags, corral):
    async def scenario():
        async with InProcessAgent(agent_flags()) as a:
            call = launch("sized", ["/bin/sh", "-c", "stty size > size"])
            call["launch_container"]["container"]["tty_info"] = {"window_size": {"rows": 33, "columns": 99}}
            assert (await a.call(call))[0] == 200
            status, answer = await a.call({"type": "WAIT_CONTAINER",
                                           "wait_container": {"container_id": {"value": "sized"}}})
            assert status == 200 and answer["wait_container"]["exit_status"] == 0, answer
            with open(os.path.join(corral.work_dir, "containers", "sized", "size")) as f:
                assert f.read() == "33 99\n"
            bad = launch("bad", ["true"])
            bad["launch_container"]["container"]["tty_info"] = {"window_size": {"rows": 0, "columns": 99}}
            assert (await a.call(bad))[0] == 400
            assert (await a.call({"type": "REMOVE_CONTAINER",
                                  "remove_container": {"container_id": {"value": "sized"}}}))[0] == 200
    asyncio.run(scenario())
