"""RecordIO, the framing of Mesos's streaming calls (`application/recordio`): each record is its
length in bytes, in decimal ASCII, a newline, then the record itself (Mesos: recordio.hpp).

    b'17\\n{"type":"DATA"...}'

The records are the messages of the call, each encoded per the request's `Message-Accept`
(or `Message-Content-Type`): here, JSON. `encode` frames one record; `Decoder` takes bytes as
they arrive, in pieces of any size, and hands back the whole records; `records` reads them from
a stream (aiohttp's or asyncio's: anything with `async read(n)`).

Bad framing (a length that is no decimal number, or longer than `max_size`, or a stream that
ends inside a record) is a RecordIOError: one line, for a 400.
"""

from __future__ import annotations

CONTENT_TYPE = "application/recordio"
MAX_SIZE = 1 << 20              # the largest record a Decoder takes by default
_MAX_DIGITS = 20                # a length header longer than this is garbage, whatever max_size says
READ_CHUNK = 65536


class RecordIOError(ValueError):
    pass


def encode(record: bytes) -> bytes:
    return b"%d\n%s" % (len(record), record)


class Decoder:
    """Whole records out of a byte stream fed in pieces; state is kept between feeds."""

    def __init__(self, max_size: int = MAX_SIZE):
        self.max_size = max_size
        self._buffer = bytearray()
        self._size: int | None = None       # the length of the record being read, once its header is in

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        records = []
        while True:
            if self._size is None:
                newline = self._buffer.find(b"\n", 0, _MAX_DIGITS + 1)
                if newline < 0:
                    if len(self._buffer) > _MAX_DIGITS:
                        raise RecordIOError("bad RecordIO framing: a record's length is not a decimal number")
                    break
                self._size = self._length(bytes(self._buffer[:newline]))
                del self._buffer[:newline + 1]
            if len(self._buffer) < self._size:
                break
            records.append(bytes(self._buffer[:self._size]))
            del self._buffer[:self._size]
            self._size = None
        return records

    def _length(self, header: bytes) -> int:
        if not header.isdigit():
            raise RecordIOError(f"bad RecordIO framing: a record's length is not a decimal number: {header[:20]!r}")
        size = int(header)
        if size > self.max_size:
            raise RecordIOError(f"bad RecordIO framing: a record of {size} bytes is over the limit of {self.max_size}")
        return size

    def close(self) -> None:
        """The stream has ended: raise if it ended inside a record."""
        if self._buffer or self._size is not None:
            raise RecordIOError("bad RecordIO framing: the stream ended inside a record")


async def records(stream, max_size: int = MAX_SIZE):
    """The records of `stream` as they arrive, until it ends (RecordIOError for bad framing)."""
    decoder = Decoder(max_size)
    while True:
        data = await stream.read(READ_CHUNK)
        if not data:
            decoder.close()
            return
        for record in decoder.feed(data):
            yield record
