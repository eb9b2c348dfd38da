"""The Mesos containerizer's wait for a container's end: the supervisor's exit, seen through a
pidfd, or a limit that an isolator watches (a memory cgroup's OOM event, say), whichever comes
first. block() drives it with poll(2) (the CLI); MesosContainerizer drives the same fds from its
asyncio loop (containerizer.py).
"""

from __future__ import annotations

import os
import select
import time

from corral import linux
from corral.isolators import Watch
from corral.types import NoSuchContainer, Termination

from .. import state
from ..base import Waiter as BaseWaiter

STARTING_POLL_INTERVAL = 0.01    # how often a waiter looks for the pids of a container still launching


class Waiter(BaseWaiter):
    """Waits for one container's end: the supervisor's exit (a pidfd) or an isolator's limitation.

    `fds` and `interval` say what to wait on; `ready(fd)` says what happened. block() drives it
    with poll(2); MesosContainerizer drives it from an asyncio loop.
    """

    def __init__(self, containerizer, files: state.ContainerFiles):
        """`containerizer`: the SyncMesosContainerizer whose container it is."""
        self.containerizer = containerizer
        self.files = files
        self.result: Termination | None = files.termination()
        self.pidfd: int | None = None
        self.watches: list[Watch] = []
        self.starting = False
        if self.result is None:
            self._open()

    def _open(self) -> None:
        sup = self.files.pids().get("supervisor", {})
        self.supervisor_pid = sup.get("pid")
        if not sup:
            # Another process is launching it: look again shortly (its launch either writes the
            # pids within milliseconds or removes the container).
            if not self.files.exists():
                raise NoSuchContainer(self.files.container_id)
            self.starting = True
            return
        self.starting = False
        if sup:
            try:
                self.pidfd = os.pidfd_open(sup["pid"])
            except ProcessLookupError:
                pass
            # The pidfd pins the process: only now is the start-time check free of pid reuse.
            if self.pidfd is not None and linux.process_start_time(sup["pid"]) != sup["start"]:
                os.close(self.pidfd)
                self.pidfd = None
        if self.pidfd is None:
            self.result = self.containerizer.termination(self.files)
            return
        for isolator in self.containerizer._isolators_of(self.files):
            watch = isolator.watch(self.files.container_id)
            if watch is not None:
                self.watches.append(watch)
        # A limit broken before the watches existed sent its event to no one: ask now.
        self.ready(None)

    @property
    def fds(self) -> list[int]:
        return [fd for fd in [self.pidfd] + [w.fd for w in self.watches] if fd is not None]

    @property
    def interval(self) -> float | None:
        if self.starting:
            return STARTING_POLL_INTERVAL
        return min((w.interval for w in self.watches if w.interval), default=None)

    def ready(self, fd: int | None) -> Termination | None:
        """`fd` turned readable (None: the interval passed). Returns the termination once ended."""
        if self.result is not None:
            return self.result
        if self.starting:
            self._open()
            return self.result
        if fd == self.pidfd:
            self.containerizer.launcher.reap(self.supervisor_pid)
            self.result = self.containerizer.termination(self.files)
            return self.result
        for watch in self.watches:
            if fd is None or fd == watch.fd:
                limitation = watch.check()
                if limitation is not None:
                    self.containerizer.end(self.files.container_id, limitation)
        return None

    def block(self, timeout: float | None = None) -> Termination | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.result is None:
            poller = select.poll()     # anew each round: the fds change once a starting container has pids
            for fd in self.fds:
                poller.register(fd, select.POLLIN)
            step = self.interval
            if deadline is not None:
                left = max(0.0, deadline - time.monotonic())
                step = left if step is None else min(step, left)
            events = poller.poll(None if step is None else step * 1000)
            for fd, _ in events:
                self.ready(fd)
            if not events:
                if deadline is not None and time.monotonic() >= deadline:
                    break
                self.ready(None)
        return self.result

    def close(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
        for watch in self.watches:
            watch.close()
        self.watches = []
