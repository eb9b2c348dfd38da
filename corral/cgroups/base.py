"""What a cgroup is in either version: a directory of files holding processes; and the
version-neutral records its controllers report."""

from __future__ import annotations

import errno
import os
import signal
import time

from corral.record import Record


class Cgroup:
    version = 0

    def __init__(self, controller: str, path: str):
        self.controller_name = controller
        self.path = path

    def __repr__(self):
        return f"{type(self).__name__}({self.path})"

    def exists(self) -> bool:
        return os.path.isdir(self.path)

    def create(self) -> None:
        os.makedirs(self.path, exist_ok=True)

    def attach(self, pid: int) -> None:
        self.write("cgroup.procs", str(pid))

    def join_files(self) -> list[str]:
        """The files through which a process moves itself here, writing "0" to each (init joins
        its cgroups so: see Launcher.fork). cgroup2's cgroup.procs moves the whole process;
        cgroups that go along with this one (v1 cpuacct with cpu) add theirs."""
        return [os.path.join(self.path, "cgroup.procs")]

    def procs(self) -> list[int]:
        try:
            with open(os.path.join(self.path, "cgroup.procs")) as f:
                return [int(p) for p in f.read().split()]
        except FileNotFoundError:
            return []

    def read(self, name: str) -> str:
        with open(os.path.join(self.path, name)) as f:
            return f.read()

    def write(self, name: str, value: str) -> None:
        with open(os.path.join(self.path, name), "w") as f:
            f.write(value)

    def read_keyed(self, name: str) -> dict[str, int]:
        """A flat-keyed file (cpu.stat, memory.stat, memory.events, cgroup.events, ...) as a dict."""
        values = {}
        for line in self.read(name).splitlines():
            key, _, value = line.partition(" ")
            value = value.strip()
            if value.lstrip("-").isdigit():
                values[key] = int(value)
        return values

    def settle(self, name: str, value: str, reached) -> bool:
        """Write `value` to the file `name` and wait (up to 5 s) until `reached()` says the kernel
        has done it (a freeze takes effect asynchronously); whether it did. False if the cgroup is gone."""
        try:
            self.write(name, value)
            for _ in range(5000):
                if reached():
                    return True
                time.sleep(0.001)
        except FileNotFoundError:
            pass
        return False

    def kill(self) -> None:
        raise NotImplementedError

    def kill_frozen(self) -> None:
        """SIGKILL every process of the cgroup the caller has frozen (so that none can fork away
        while we go through them, as Mesos's LinuxLauncher does); then thaw it."""
        for pid in self.procs():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.freeze(False)

    def remove(self, timeout: float = 5.0) -> None:
        """rmdir once the last process has gone (killed processes take a moment to exit)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError as e:
                if e.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise
                time.sleep(0.001)


# -- what the controllers report, the same in either version ----------------------------------

class Notice:
    """A controller's news (an OOM, say): `fd` turns readable when there is some (poll it, or
    an asyncio loop); take() says whether there was, and quiets it until the next; close()."""

    def __init__(self, fd: int, take, close):
        self.fd, self.take, self.close = fd, take, close


class CpuTimes(Record):
    """cpu controller's accounting: CPU time and CFS throttling, in seconds."""
    user: float = 0.0
    system: float = 0.0
    nr_periods: int = 0
    nr_throttled: int = 0
    throttled: float = 0.0


class MemoryUsage(Record):
    """memory controller's accounting, in bytes; limit None when there is none."""
    total: int = 0
    rss: int = 0          # anonymous memory (v1 total_rss, v2 anon)
    cache: int = 0        # page cache (v1 total_cache, v2 file)
    limit: int | None = None
