"""`corral --agent ... attach` and `exec`: a container's (or a nested session's) I/O through the
agent's streaming calls, as the Mesos CLI's `task attach` and `task exec` have it.

    output   one call whose answer is a RecordIO stream of ProcessIO records (DATA STDOUT or
             STDERR, CONTROL HEARTBEAT), read on a thread of its own and written to ours
    input    ATTACH_CONTAINER_INPUT: a chunked request body of RecordIO Calls, written here:
             the container id first, then our window size, our stdin and, while both are quiet,
             heartbeats that announce how long the agent may wait for the next record

With a tty our terminal is raw meanwhile (corral/terminal.py), restored however this ends; its
detach keys end the input stream (no end of stdin is sent) and leave at once (Detached). The
container runs on; a nested session ends, as the agent ends one whose client has gone (Mesos's).
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import select
import threading

from corral.terminal import Detached
from corral.types import CorralError

HEARTBEAT = 10.0        # seconds between the input stream's heartbeats while nothing else is sent
CHUNK = 65536


def _frame(message: dict) -> bytes:
    record = json.dumps(message, separators=(",", ":")).encode()
    return b"%d\n%s" % (len(record), record)


def session(client, output_call: dict, container_id: dict, stdin: bool, terminal) -> None:
    """Stream `output_call`'s answer to our stdout and stderr until it ends; meanwhile, with
    `stdin`, our stdin (and our window size, with a terminal) to `container_id`'s input. Detached
    when the terminal's detach keys are typed: the output is left unread, nothing more written."""
    response = client.open("POST", "/api/v1", output_call, {"Accept": "application/recordio",
                                                            "Message-Accept": "application/json"})
    done_r, done_w = os.pipe2(os.O_CLOEXEC)
    failure: list[BaseException] = []
    detached = threading.Event()
    reader = threading.Thread(target=_copy_output, args=(response, done_w, failure, detached), daemon=True)
    reader.start()
    try:
        if stdin and _send_input(client, container_id, terminal, done_r):
            detached.set()
            raise Detached()
        reader.join()
    finally:
        os.close(done_r)
    if failure:
        raise failure[0]


def _copy_output(response, done_w: int, failure: list, detached: threading.Event) -> None:
    from corral.agent.recordio import Decoder
    decoder = Decoder()
    targets = {"STDOUT": 1, "STDERR": 2}
    try:
        while chunk := response.read1(CHUNK):
            for record in decoder.feed(chunk):
                io = json.loads(record)
                if io.get("type") == "DATA" and not detached.is_set():
                    data = io["data"]
                    _write_all(targets.get(data.get("type"), 1), base64.b64decode(data.get("data", "")))
    except (OSError, ValueError, http.client.HTTPException) as e:
        failure.append(CorralError(f"the output stream broke off: {e}"))
    finally:
        os.close(done_w)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def _send_input(client, container_id: dict, terminal, done_r: int) -> bool:
    """ATTACH_CONTAINER_INPUT, its body written as our input comes, until our stdin or the
    output (done_r readable: the container's I/O has ended) ends, or the detach keys are typed
    on `terminal` (then True)."""
    def call(kind: str, **fields) -> bytes:
        return _frame({"type": "ATTACH_CONTAINER_INPUT",
                       "attach_container_input": {"type": kind, **fields}})

    def io(message: dict) -> bytes:
        return call("PROCESS_IO", process_io=message)

    def stdin_data(data: bytes) -> bytes:
        return io({"type": "DATA", "data": {"type": "STDIN", "data": base64.b64encode(data).decode()}})

    def window(size) -> bytes:
        return io({"type": "CONTROL", "control": {"type": "TTY_INFO", "tty_info": {
            "window_size": {"rows": size[0], "columns": size[1]}}}})
    heartbeat = io({"type": "CONTROL", "control": {"type": "HEARTBEAT", "heartbeat": {
        "interval": {"nanoseconds": int(HEARTBEAT * 1e9)}}}})
    watch = terminal.detach_watch() if terminal is not None else None
    connection = http.client.HTTPConnection(client.host, client.port)
    try:
        connection.putrequest("POST", "/api/v1")
        for name, value in {**client.headers, "Content-Type": "application/recordio",
                            "Message-Content-Type": "application/json", "Transfer-Encoding": "chunked"}.items():
            connection.putheader(name, value)
        connection.endheaders()

        def send(record: bytes) -> None:
            connection.send(b"%x\r\n%s\r\n" % (len(record), record))
        send(call("CONTAINER_ID", container_id=container_id))
        send(heartbeat)
        if terminal is not None and terminal.size():
            send(window(terminal.size()))
        watched = [0, done_r] + ([terminal.resize_fd] if terminal is not None and terminal.resize_fd is not None else [])
        while True:
            ready, _, _ = select.select(watched, [], [], HEARTBEAT)
            if done_r in ready:
                break
            if not ready:
                send(heartbeat)
            if terminal is not None and terminal.resize_fd in ready:
                os.read(terminal.resize_fd, 64)
                if terminal.size():
                    send(window(terminal.size()))
            if 0 in ready:
                data = os.read(0, CHUNK)
                if not data:            # the end of our stdin (with a tty, ^D is the task's end of input)
                    send(stdin_data(b""))
                    break
                if watch is not None:
                    data = watch.feed(data)     # less what may begin the detach keys, held back
                if data:
                    send(stdin_data(data))
                if watch is not None and watch.detached:
                    break
        connection.send(b"0\r\n\r\n")
        connection.getresponse().read()
    except (OSError, http.client.HTTPException):
        pass            # the container ended while we wrote: its output says the rest
    finally:
        connection.close()
    return watch is not None and watch.detached
