"""LAUNCH_NESTED_CONTAINER_SESSION, ATTACH_CONTAINER_INPUT and WAIT_NESTED_CONTAINER over a real
agent: a client written here speaks RecordIO as a Mesos client does (`mesos task exec`)."""

from __future__ import annotations

import asyncio
import base64
import json

from tests.agent.agentkit import InProcessAgent, until

from corral.agent.recordio import Decoder, encode

ATTACH = {"Content-Type": "application/recordio", "Message-Content-Type": "application/json"}
RECORDIO = {"Content-Type": "application/json", "Accept": "application/recordio", "Message-Accept": "application/json"}


def _launch(container_id: str, command: str) -> dict:
    return {"type": "LAUNCH_CONTAINER", "launch_container": {
        "container_id": {"value": container_id}, "command": {"shell": True, "value": command}}}


def _session(session_id: str, parent: str, command: dict, tty=None) -> dict:
    call = {"container_id": {"value": session_id, "parent": {"value": parent}}, "command": command}
    if tty is not None:
        call["container"] = {"type": "MESOS", "tty_info": {"window_size": {"rows": tty[0], "columns": tty[1]}}}
    return {"type": "LAUNCH_NESTED_CONTAINER_SESSION", "launch_nested_container_session": call}


def _input(session_id: str, parent: str, *process_ios: dict) -> bytes:
    records = [{"type": "ATTACH_CONTAINER_INPUT", "attach_container_input": {
        "type": "CONTAINER_ID", "container_id": {"value": session_id, "parent": {"value": parent}}}}]
    records += [{"type": "ATTACH_CONTAINER_INPUT", "attach_container_input": {"type": "PROCESS_IO", "process_io": io}}
                for io in process_ios]
    return b"".join(encode(json.dumps(r).encode()) for r in records)


def _stdin(data: bytes) -> dict:
    return {"type": "DATA", "data": {"type": "STDIN", "data": base64.b64encode(data).decode()}}


class Output:
    """The session's stream, read as it comes: ProcessIO records by stream."""

    def __init__(self, response):
        self.response, self.decoder, self.by_stream, self.records = response, Decoder(), {}, []

    async def until(self, stream: str, wanted: bytes, timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            while wanted not in self.by_stream.get(stream, b""):
                if not await self.more():
                    raise AssertionError(f"the stream ended before {wanted!r}: {self.by_stream}")

    async def more(self) -> bool:
        chunk = await self.response.content.readany()
        for record in self.decoder.feed(chunk):
            message = json.loads(record)
            self.records.append(message)
            assert message["type"] == "DATA" and message["data"]["type"] in ("STDOUT", "STDERR"), message
            stream = message["data"]["type"]
            self.by_stream[stream] = self.by_stream.get(stream, b"") + base64.b64decode(message["data"]["data"])
        return bool(chunk)

    async def to_end(self) -> None:
        async with asyncio.timeout(20):
            while await self.more():
                pass
        self.decoder.close()


class _Running:
    """A container of the agent's for the test's sessions, removed at the end however it ends."""

    def __init__(self, a, name: str = "c1"):
        self.a, self.name = a, name

    async def __aenter__(self):
        status, _ = await self.a.call(_launch(self.name, "exec sleep 1000"))     # one process, from the start
        assert status == 200

    async def __aexit__(self, *exc):
        await self.a.call({"type": "KILL_CONTAINER", "kill_container": {"container_id": {"value": self.name}}})
        await self.a.call({"type": "WAIT_CONTAINER", "wait_container": {"container_id": {"value": self.name}}})
        await self.a.call({"type": "REMOVE_CONTAINER", "remove_container": {"container_id": {"value": self.name}}})


async def _wait_nested(a, session_id: str, parent: str) -> int:
    status, reply = await a.call({"type": "WAIT_NESTED_CONTAINER", "wait_nested_container": {
        "container_id": {"value": session_id, "parent": {"value": parent}}}})
    assert status == 200, reply
    return reply["wait_nested_container"]["exit_status"]


def test_a_session_streams_its_output_and_ends_with_the_command(agent_flags):
    async def scenario():
        async with InProcessAgent(agent_flags()) as a, _Running(a):
            init = json.load(open(f"{a.agent.flags.runtime_dir}/containers/c1/pids.json"))["init"]["pid"]
            command = {"shell": True, "value": "echo out; echo err >&2; readlink /proc/self/ns/pid; exit 3"}
            async with a.http.post(a.url + "/api/v1", data=json.dumps(_session("s1", "c1", command)),
                                   headers=RECORDIO) as r:
                assert r.status == 200 and r.content_type == "application/recordio"
                assert r.headers["Message-Content-Type"] == "application/json"
                output = Output(r)
                await output.to_end()
            import os
            assert output.by_stream["STDOUT"] == f"out\n{os.readlink(f'/proc/{init}/ns/pid')}\n".encode()
            assert output.by_stream["STDERR"] == b"err\n"
            assert await _wait_nested(a, "s1", "c1") == 3 << 8
    asyncio.run(scenario())


def test_an_interactive_session_with_a_terminal(agent_flags):
    far = ("import os, signal, sys, fcntl, struct, termios\n"
           "size = lambda: struct.unpack('HH', fcntl.ioctl(0, termios.TIOCGWINSZ, bytes(4)))\n"
           "signal.signal(signal.SIGWINCH, lambda *_: os.write(1, b'size %d %d\\n' % size()))\n"
           "print('tty', os.isatty(0), 'size %d %d' % size(), flush=True)\n"
           "for line in sys.stdin:\n"
           "    print('got', line.strip(), flush=True)\n")

    async def scenario():
        import sys
        async with InProcessAgent(agent_flags()) as a, _Running(a):
            command = {"shell": False, "value": sys.executable, "arguments": [sys.executable, "-c", far]}
            async with a.http.post(a.url + "/api/v1", data=json.dumps(_session("s1", "c1", command, tty=(30, 90))),
                                   headers=RECORDIO) as r:
                assert r.status == 200
                output = Output(r)
                await output.until("STDOUT", b"tty True size 30 90")
                resize = {"type": "CONTROL", "control": {"type": "TTY_INFO", "tty_info": {
                    "window_size": {"rows": 40, "columns": 100}}}}
                heartbeat = {"type": "CONTROL", "control": {"type": "HEARTBEAT", "heartbeat": {}}}
                # One attach after another, each awaited: a Ctrl-C must not overtake the line before it.
                for ios, effect in (((_stdin(b"hello\r"), heartbeat), b"got hello"), ((resize,), b"size 40 100"),
                                    ((_stdin(b"\x03"),), None)):
                    async with a.http.post(a.url + "/api/v1", data=_input("s1", "c1", *ios),
                                           headers=ATTACH) as attach:
                        assert attach.status == 200, await attach.text()
                    if effect:
                        await output.until("STDOUT", effect)
                await output.to_end()                   # Ctrl-C on its terminal ended it
            assert await _wait_nested(a, "s1", "c1") == (128 + 2) << 8
    asyncio.run(scenario())


def test_stdin_through_attach_and_its_end(agent_flags):
    async def scenario():
        async with InProcessAgent(agent_flags()) as a, _Running(a):
            async with a.http.post(a.url + "/api/v1", data=json.dumps(_session("s1", "c1", {"value": "cat"})),
                                   headers=RECORDIO) as r:
                output = Output(r)
                inputs = _input("s1", "c1", _stdin(b"one\n"), _stdin(b"two\n"), _stdin(b""))
                async with a.http.post(a.url + "/api/v1", data=inputs,
                                       headers=ATTACH) as attach:
                    assert attach.status == 200
                await output.to_end()
            assert output.by_stream["STDOUT"] == b"one\ntwo\n"
            assert await _wait_nested(a, "s1", "c1") == 0
    asyncio.run(scenario())


def test_bad_input_is_a_4xx(agent_flags):
    async def scenario():
        async with InProcessAgent(agent_flags("--http_request_timeout=1secs")) as a, _Running(a):
            status, text = await a.call(_session("s1", "no-such", {"value": "true"}), headers=RECORDIO)
            assert status == 200                # the stream starts; the command says no such container
            status, text = await a.call({"type": "LAUNCH_NESTED_CONTAINER_SESSION",
                                         "launch_nested_container_session": {
                                             "container_id": {"value": "s2"}, "command": {"value": "true"}}})
            assert status == 400 and "parent" in text
            status, text = await a.call(_session("s3", "c1", {"value": "true"}),
                                        headers={**RECORDIO, "Message-Accept": "application/x-protobuf"})
            assert status == 406
            # Attach: bad framing, an unknown session, a first record of the wrong kind
            for body, code in ((b"x\n{}", 400), (_input("nobody", "c1"), 404),
                               (encode(json.dumps({"type": "ATTACH_CONTAINER_INPUT", "attach_container_input": {
                                   "type": "PROCESS_IO"}}).encode()), 400)):
                async with a.http.post(a.url + "/api/v1", data=body,
                                       headers=ATTACH) as r:
                    assert r.status == code, (body, await r.text())
                    assert len((await r.text()).splitlines()) == 1
            status, _ = await a.call({"type": "WAIT_NESTED_CONTAINER", "wait_nested_container": {
                "container_id": {"value": "unknown", "parent": {"value": "c1"}}}})
            assert status == 404
    asyncio.run(scenario())


def test_an_input_stream_that_sends_nothing_is_cut_off(agent_flags):
    async def scenario():
        async with InProcessAgent(agent_flags("--http_request_timeout=1secs")) as a, _Running(a):
            async with a.http.post(a.url + "/api/v1", data=json.dumps(_session("s1", "c1", {"value": "cat"})),
                                   headers=RECORDIO) as r:
                output = Output(r)

                async def silent():
                    yield _input("s1", "c1")
                    await asyncio.sleep(30)             # then nothing, not even a heartbeat
                    yield b""
                async with asyncio.timeout(10):
                    async with a.http.post(a.url + "/api/v1", data=silent(),
                                           headers=ATTACH) as attach:
                        assert attach.status == 408
                # The session itself goes on: another attach can still end its input.
                async with a.http.post(a.url + "/api/v1", data=_input("s1", "c1", _stdin(b"late\n"), _stdin(b"")),
                                       headers=ATTACH) as attach:
                    assert attach.status == 200
                await output.to_end()
            assert output.by_stream["STDOUT"] == b"late\n"
    asyncio.run(scenario())


def test_a_client_that_goes_away_ends_its_session(agent_flags, corral):
    async def scenario():
        async with InProcessAgent(agent_flags()) as a, _Running(a):
            launcher = corral.sync().launcher
            await until(lambda: len(launcher.pids("c1")) == 2)   # init and the task (spawned after LAUNCH's answer)
            before = set(launcher.pids("c1"))
            response = await a.http.post(a.url + "/api/v1", headers=RECORDIO,
                                         data=json.dumps(_session("s1", "c1", {"value": "exec sleep 1000"})))
            assert response.status == 200
            deadline = asyncio.get_running_loop().time() + 20
            while set(launcher.pids("c1")) == before:       # until the session's sleep is there
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.02)
            response.close()                                # the client hangs up
            assert await _wait_nested(a, "s1", "c1") == (128 + 15) << 8
            assert set(launcher.pids("c1")) == before
    asyncio.run(scenario())
