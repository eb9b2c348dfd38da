"""libprocess's messages over HTTP, as Mesos's master and agents exchange them.

A message named N from process `from` to `to@host:port` is `POST /to/N` to host:port with the
protobuf as its body and `Libprocess-From: from`, the sender's own id@host:port, where the
receiver sends its messages back (on connections of its own). A libprocess receiver answers
nothing to a request that carries Libprocess-From, so sending is writing on a kept connection,
never waiting for an answer; the receiving end here (an aiohttp route) answers 202, which a
libprocess sender reads and drops.
"""

from __future__ import annotations

import asyncio
import logging
import re

from corral.types import InvalidInput

log = logging.getLogger("corral.libprocess")


class UPID:
    """A libprocess process id: id@host:port, such as master@127.0.0.1:5050 or slave(1)@10.0.0.1:5051."""

    def __init__(self, id: str, host: str, port: int):
        self.id, self.host, self.port = id, host, port

    @classmethod
    def parse(cls, text: str) -> "UPID":
        match = re.fullmatch(r"([^@\s/]+)@([^:@\s/]+):(\d{1,5})", text.strip())
        if not match or not 0 < int(match[3]) < 65536:
            raise InvalidInput(f"{text!r} is not a libprocess address such as master@127.0.0.1:5050")
        return cls(match[1], match[2], int(match[3]))

    def __str__(self) -> str:
        return f"{self.id}@{self.host}:{self.port}"

    def __eq__(self, other) -> bool:
        return isinstance(other, UPID) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))


class Link:
    """One kept connection to a peer process, on which messages go out in the order sent.

    `on_broken()` is called once when an open connection ends (the peer went away: for a
    master, a failover or a restart); the next send opens a new one."""

    def __init__(self, me: UPID, peer: UPID, on_broken=None):
        self.me, self.peer, self.on_broken = me, peer, on_broken
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task | None = None
        self._connecting = asyncio.Lock()

    async def send(self, message, name: str) -> bool:
        """Write the message; False when the peer cannot be reached now (nothing was sent)."""
        body = message.SerializeToString()
        head = (f"POST /{self.peer.id}/{name} HTTP/1.1\r\n"
                f"User-Agent: libprocess/{self.me}\r\nLibprocess-From: {self.me}\r\n"
                f"Connection: Keep-Alive\r\nHost: {self.peer.host}:{self.peer.port}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        try:
            writer = await self._connection()
            writer.write(head + body)
            await writer.drain()
            return True
        except OSError as e:
            log.debug("cannot send %s to %s: %s", name, self.peer, e)
            self._drop()
            return False

    async def _connection(self) -> asyncio.StreamWriter:
        async with self._connecting:
            if self._writer is None or self._writer.is_closing():
                reader, self._writer = await asyncio.wait_for(
                    asyncio.open_connection(self.peer.host, self.peer.port), timeout=5)
                self._reader_task = asyncio.get_running_loop().create_task(self._drain_answers(reader, self._writer))
            return self._writer

    async def _drain_answers(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read what the peer sends on this connection (nothing, or answers to drop) until it closes."""
        try:
            while await reader.read(65536):
                pass
        except OSError:
            pass
        if self._writer is writer:
            self._drop()
            if self.on_broken is not None:
                self.on_broken()

    def _drop(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._writer = None

    async def close(self) -> None:
        task, self._reader_task = self._reader_task, None
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
