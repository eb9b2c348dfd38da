"""Threads and fork: the Mesos containerizer's LaunchServer forks only from a single-threaded
process, and the Docker and external containerizers run their calls on threads."""

from __future__ import annotations

import gc
import os
import threading
import time


def only_thread(timeout: float = 10) -> bool:
    """Wait for this process to be down to its main thread (the calls under way end first)."""
    gc.collect()                # an executor that nothing refers to lets its idle workers go
    deadline = time.monotonic() + timeout
    while _threads() > 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    return _threads() == 1


def _threads() -> int:
    """Threads as the launcher counts them (/proc/self/task): a Python thread leaves threading's
    count before its system thread has exited."""
    return max(threading.active_count(), len(os.listdir("/proc/self/task")))
