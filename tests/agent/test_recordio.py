"""agent/recordio.py: Mesos's RecordIO framing, fed as a network hands it over."""

from __future__ import annotations

import asyncio

import pytest

from corral.agent.recordio import Decoder, RecordIOError, encode, records


def test_records_come_out_whole_however_the_bytes_are_split():
    messages = [b'{"type":"DATA"}', b"", "é\n2\n".encode(), b"x" * 70000]
    stream = b"".join(encode(m) for m in messages)
    assert stream.startswith(b'15\n{"type"')
    for step in (1, 3, 7, 4096, len(stream)):
        decoder, out = Decoder(), []
        for i in range(0, len(stream), step):
            out += decoder.feed(stream[i:i + step])
        decoder.close()
        assert out == messages


@pytest.mark.parametrize("stream", [b"x\n{}", b"-1\n", b" 2\n{}", b"1" * 30, b"2e3\n"])
def test_a_length_that_is_no_decimal_number_is_bad_framing(stream):
    with pytest.raises(RecordIOError, match="not a decimal number"):
        Decoder().feed(stream)


def test_a_record_over_the_limit_is_refused_before_it_is_read():
    with pytest.raises(RecordIOError, match="over the limit"):
        Decoder(max_size=10).feed(b"11\n")


def test_a_stream_that_ends_inside_a_record_is_bad_framing():
    decoder = Decoder()
    assert decoder.feed(b"5\nab") == []
    with pytest.raises(RecordIOError, match="ended inside"):
        decoder.close()


def test_records_read_from_a_stream():
    async def read(data: bytes) -> list[bytes]:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return [record async for record in records(reader)]
    assert asyncio.run(read(encode(b"a") + encode(b"bc"))) == [b"a", b"bc"]
    with pytest.raises(RecordIOError):
        asyncio.run(read(b"3\nab"))
