"""The agent's logging verbosity, as glog's -v that Mesos's GET_LOGGING_LEVEL reads and
SET_LOGGING_LEVEL sets for a while: 0, the level the agent starts at, logs corral's messages at
INFO and above; any higher level logs them all (DEBUG). A level set reverts to the starting one
once its duration is over; a later SET replaces the earlier one, its duration with it. One
for the process, as logging's levels are (and glog's)."""

from __future__ import annotations

import asyncio
import logging

ORIGINAL = 0
LOGGER = "corral"


class Verbosity:
    def __init__(self):
        self.level = ORIGINAL
        self._revert: asyncio.TimerHandle | None = None

    def set(self, level: int, seconds: float) -> None:
        if self._revert is not None:
            self._revert.cancel()
            self._revert = None
        self._apply(level)
        if level != ORIGINAL:
            self._revert = asyncio.get_running_loop().call_later(seconds, self._apply, ORIGINAL)

    def _apply(self, level: int) -> None:
        self.level = level
        logging.getLogger(LOGGER).setLevel(logging.DEBUG if level > 0 else logging.INFO)


VERBOSITY = Verbosity()
