"""Slow and stuck HTTP clients, over real loopback sockets: none of them delays the others, and
each is cut off after --http_request_timeout (0.5 s here)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket

from tests.agent.agentkit import InProcessAgent

TIMEOUT = 0.5
HEALTH = json.dumps({"type": "GET_HEALTH"})


async def connect(url: str, rcvbuf: int | None = None):
    host, port = url.rsplit("/", 1)[1].split(":")
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.setblocking(False)
    await asyncio.get_running_loop().sock_connect(s, (host, int(port)))
    return await asyncio.open_connection(sock=s)


async def health_takes(a: InProcessAgent) -> float:
    """Seconds a GET_HEALTH takes another client, on a fresh connection."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await a.call({"type": "GET_HEALTH"}) == (200, {"type": "GET_HEALTH", "get_health": {"healthy": True}})
    return loop.time() - start


async def closed_after(reader: asyncio.StreamReader, start: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when that was."""
    received = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), 10):
            received += chunk
    except ConnectionResetError:
        pass
    return received, asyncio.get_running_loop().time() - start


def test_a_slowloris_is_closed_and_others_are_served_meanwhile(agent_flags):
    async def scenario():
        async with InProcessAgent(agent_flags(f"--http_request_timeout={TIMEOUT}")) as a:
            start = asyncio.get_running_loop().time()     # before the server accepts: its clock starts there
            reader, writer = await connect(a.url)
            request = (f"POST /api/v1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       f"Content-Length: {len(HEALTH)}\r\n\r\n{HEALTH}").encode()

            async def trickle():
                """One byte every 20 ms: the whole request would take 2.6 s."""
                for byte in request:
                    writer.write(bytes([byte]))
                    await asyncio.sleep(0.02)
            trickling = asyncio.ensure_future(trickle())
            others = [await health_takes(a) for _ in range(5)]
            received, after = await closed_after(reader, start)
            assert not trickling.done(), "the slow client was closed only once it had sent everything"
            trickling.cancel()
            writer.close()
            assert received == b"" and TIMEOUT <= after < TIMEOUT + 1, (received, after)
            assert sum(others) < after, (others, after)     # all answered while the slow one was held
    asyncio.run(scenario())


def test_a_body_that_never_arrives_is_answered_408_and_closed(agent_flags):
    async def scenario():
        async with InProcessAgent(agent_flags(f"--http_request_timeout={TIMEOUT}")) as a:
            start = asyncio.get_running_loop().time()     # before the server accepts: its clock starts there
            reader, writer = await connect(a.url)
            writer.write(b"POST /api/v1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n{\"type\": ")
            others = [await health_takes(a) for _ in range(5)]
            received, after = await closed_after(reader, start)
            writer.close()
            head, _, body = received.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 408 ") and b"Connection: close" in head, received
            assert body == b"the request's body did not arrive within 0.5s\n"
            assert TIMEOUT <= after < 2 * TIMEOUT + 1, after
            assert sum(others) < after, (others, after)     # all answered while the slow one was held
    asyncio.run(scenario())


def test_a_body_declared_too_large_is_refused_without_reading_it(agent_flags):
    async def scenario():
        async with InProcessAgent(agent_flags(f"--http_request_timeout={TIMEOUT}")) as a:
            start = asyncio.get_running_loop().time()     # before the server accepts: its clock starts there
            reader, writer = await connect(a.url)
            writer.write(b"POST /api/v1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 10000000000\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 413 "), head
            assert asyncio.get_running_loop().time() - start < TIMEOUT, "answered before any timeout"
            writer.close()
    asyncio.run(scenario())


def test_a_client_that_never_reads_its_answers_is_closed(agent_flags, caplog):
    """3000 pipelined GET /metrics, none read: far more than the sockets' buffers hold, so the
    server waits for room; after the timeout it gives up on the connection."""
    async def scenario():
        async with InProcessAgent(agent_flags(f"--http_request_timeout={TIMEOUT}")) as a:
            start = asyncio.get_running_loop().time()     # before the server accepts: its clock starts there
            reader, writer = await connect(a.url, rcvbuf=4096)
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 3000)
            await asyncio.sleep(TIMEOUT)
            others = [await health_takes(a) for _ in range(5)]
            await asyncio.sleep(TIMEOUT * 2)        # not reading
            received, after = await closed_after(reader, start)
            writer.close()
            answers = received.count(b"HTTP/1.1 200 OK")
            assert 0 < answers < 3000, answers
            assert sum(others) < after, (others, after)     # all answered while the slow one was held
    caplog.set_level(logging.WARNING, logger="aiohttp")
    asyncio.run(scenario())
    assert not caplog.records, [r.getMessage() for r in caplog.records]     # a closed connection, no error
