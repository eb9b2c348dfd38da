"""What a pull reports to. The CLI's progress bars and line printer implement the same two methods."""

from __future__ import annotations


class NoProgress:
    def start(self, name: str, total: int | None):
        """A layer's download begins; return a callable that hears each chunk's byte count, or None."""
        return None

    def finish(self, name: str, cached: bool) -> None:
        """A layer is in the store: fetched now, or found there (`cached`)."""
