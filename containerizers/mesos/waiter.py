"""The Mesos containerizer's wait for a container's end: the supervisor's report of it (the
hang-up of its supervisor.Ended pipe once status.json is written), its exit (a pidfd: a supervisor that
dies without a word), or a limit that an isolator watches (a memory cgroup's OOM event, say),
whichever comes first. block() drives it with poll(2) (the CLI); MesosContainerizer drives the
same fds from its asyncio loop (containerizer.py).
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
    """Waits for one container's end: the supervisor's report or exit, or an isolator's limitation.

    `fds` and `interval` say what to wait on; `ready(fd)` says what happened. block() drives it
    with poll(2); MesosContainerizer drives it from an asyncio loop.
    """

    def __init__(self, containerizer, files: state.ContainerFiles):
        """`containerizer`: the SyncMesosContainerizer whose container it is."""
        self.containerizer = containerizer
        self.files = files
        self.result: Termination | None = files.termination()
        self.pidfd: int | None = None
        self.ended_fd: int | None = None
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
        self.pidfd = linux.pidfd_of(sup["pid"], sup["start"])
        if self.pidfd is None:
            self.result = self.containerizer.termination(self.files)
            return
        if sup.get("ended_fd") is not None:
            # Its hang-up: the supervisor has closed the write end, having written status.json
            # (or died). A report that came before this copy is found by the ready(None) below.
            # No copy (the supervisor has exited; a container launched before corral made the
            # pipe): the pidfd tells.
            self.ended_fd = linux.pidfd_getfd(self.pidfd, sup["ended_fd"])
        for isolator in self.containerizer._isolators_of(self.files):
            watch = isolator.watch(self.files.container_id)
            if watch is not None:
                self.watches.append(watch)
        # An end or a limit that came before the watches existed sent its event to no one: ask now.
        self.ready(None)

    @property
    def fds(self) -> list[int]:
        return [fd for fd in [self.pidfd, self.ended_fd] + [w.fd for w in self.watches] if fd is not None]

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
        ended = fd == self.pidfd
        if fd is None or fd == self.ended_fd:
            if fd is not None:          # a hang-up stays: read it once
                os.close(fd)
                self.ended_fd = None
            ended = self.files.status() is not None
        if ended:
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
        for fd in (self.pidfd, self.ended_fd):
            if fd is not None:
                os.close(fd)
        self.pidfd = self.ended_fd = None
        for watch in self.watches:
            watch.close()
        self.watches = []
