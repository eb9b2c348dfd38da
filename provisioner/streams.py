"""Readers stacked under tarfile's stream mode: one hashes what passes, one decompresses.

A layer is read once, from the network or a file, and while tarfile extracts it the bytes are
hashed twice: compressed (the blob digest) and uncompressed (the config's diff_id).
"""

from __future__ import annotations

import hashlib
import re
import zlib

from .errors import DigestMismatch, InvalidImage

CHUNK = 1 << 20
_DIGEST = re.compile(r"(sha256|sha384|sha512):([0-9a-f]{64}|[0-9a-f]{96}|[0-9a-f]{128})")


def check_digest(digest: str) -> str:
    """`digest` if it is 'algo:hex' of a hash we know, else InvalidImage. The one check of every
    digest an image names: layer ids are made of digests (store.layer_id), and name directories."""
    match = _DIGEST.fullmatch(digest) if isinstance(digest, str) else None
    if not match or len(match[2]) != hashlib.new(match[1]).digest_size * 2:
        raise InvalidImage(f"invalid digest {digest!r}")
    return digest


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


class Hashing:
    """Passes read() through, hashing and counting; verify() reads the rest and compares.

    `digest` is the expected 'algo:hex', or only 'algo' to learn the digest (`.value`).
    `progress(n)` hears of every n bytes read.
    """

    def __init__(self, source, digest: str, what: str = "blob", progress=None):
        self.source = source
        self.expected = check_digest(digest) if ":" in digest else None
        self.hash = hashlib.new(digest.split(":", 1)[0])
        self.what = what
        self.progress = progress
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.source.read(n if n and n > 0 else CHUNK)
        self.hash.update(data)
        self.size += len(data)
        if self.progress and data:
            self.progress(len(data))
        return data

    @property
    def value(self) -> str:
        return f"{self.hash.name}:{self.hash.hexdigest()}"

    def verify(self) -> str:
        while self.read(CHUNK):
            pass
        if self.expected and self.value != self.expected:
            raise DigestMismatch(f"{self.what}: content is {self.value}, expected {self.expected}")
        return self.value


class _Gzip:
    """gzip as a stream, members concatenated (as pigz and some registries write them)."""

    def __init__(self, source, head: bytes):
        self.source, self.pending = source, head
        self.inflate = zlib.decompressobj(zlib.MAX_WBITS | 16)

    def read(self, n: int = -1) -> bytes:
        while True:
            data = self.pending or self.source.read(CHUNK)
            self.pending = b""
            if not data:
                return self.inflate.flush()
            try:
                out = self.inflate.decompress(data)
            except zlib.error as e:
                raise InvalidImage(f"corrupt gzip layer: {e}") from None
            if self.inflate.eof and self.inflate.unused_data:
                self.pending = self.inflate.unused_data
                self.inflate = zlib.decompressobj(zlib.MAX_WBITS | 16)
            if out:
                return out


class _Plain:
    def __init__(self, source, head: bytes):
        self.source, self.head = source, head

    def read(self, n: int = -1) -> bytes:
        if self.head:
            data, self.head = self.head, b""
            return data
        return self.source.read(n if n and n > 0 else CHUNK)


def decompressed(source):
    """A reader of `source`'s tar stream, whichever of gzip, zstd or nothing wraps it."""
    head = b""
    while len(head) < 4:
        data = source.read(4 - len(head))
        if not data:
            break
        head += data
    if head.startswith(b"\x1f\x8b"):
        return _Gzip(source, head)
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return _Zstd(_Plain(source, head))
    return _Plain(source, head)


class _Zstd:
    def __init__(self, source):
        import zstandard
        self.error = zstandard.ZstdError
        self.reader = zstandard.ZstdDecompressor().stream_reader(source, read_across_frames=True)

    def read(self, n: int = -1) -> bytes:
        try:
            return self.reader.read(n if n and n > 0 else CHUNK)
        except self.error as e:
            raise InvalidImage(f"corrupt zstd layer: {e}") from None
