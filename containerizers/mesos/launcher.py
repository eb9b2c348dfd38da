"""The launcher: forks a container's supervisor and init, and tracks every process of the
container in one cgroup so that all of them can be killed (Mesos: LinuxLauncher).

Tracking uses the cgroup2 hierarchy wherever one is mounted (v2 and hybrid hosts: cgroup.kill
and cgroup.events need no controller), else the v1 freezer.
"""

from __future__ import annotations

import os
import signal
from corral.record import Record
from corral.types import CorralError
from isolators.cgroups import cgroup_for, hierarchies

from . import supervisor


class LaunchFailed(CorralError):
    pass


class Forked(Record):
    """A container whose init exists and waits for release()."""
    supervisor_pid: int
    init_pid: int
    go_fd: int

    def release(self) -> None:
        """Let init exec the task. An init that failed before (its confinement, say) is gone and
        its pipe with it: the error it reported to the supervisor is the container's end."""
        try:
            os.write(self.go_fd, b"g")
        except BrokenPipeError:
            pass
        finally:
            os.close(self.go_fd)

    def abort(self) -> None:
        """Never run the task: init exits on the closed pipe; make sure of it."""
        os.close(self.go_fd)
        try:
            os.kill(self.init_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# The tracking cgroup of every supervisor. A leading dot: no container id can take the name.
SUPERVISORS = ".supervisors"


class Launcher:
    def __init__(self, cgroups_root: str, tracking: str | None = None):
        self.cgroups_root = cgroups_root
        self.tracking = tracking or ("unified" if hierarchies().v2 else "freezer")
        self._children: set[int] = set()   # supervisors forked here, to be reaped once they exit

    def tracking_cgroup(self, container_id: str):
        return cgroup_for(self.tracking, f"{self.cgroups_root}/{container_id}")

    def fork(self, container_id: str, spec: supervisor.LaunchSpec) -> Forked:
        # fork() copies only the calling thread: another thread's locks would stay held forever
        # in the children. The agent forks through a single-threaded launcher process instead.
        if len(os.listdir("/proc/self/task")) > 1:
            raise LaunchFailed("the launcher must fork from a single-threaded process")
        tracking = self.tracking_cgroup(container_id)
        tracking.create()
        supervisors = cgroup_for(self.tracking, f"{self.cgroups_root}/{SUPERVISORS}")
        supervisors.create()
        ready_r, ready_w = os.pipe()
        go_r, go_w = os.pipe()
        child = os.fork()
        if child == 0:
            os.close(ready_r)
            os.close(go_w)
            supervisor.start(spec, ready_w, go_r)   # never returns
        self._children.add(child)
        os.close(ready_w)
        os.close(go_r)
        # The first cgroup write after a quiet spell waits for an RCU grace period (the kernel's
        # cgroup_threadgroup_rwsem): started here, that wait overlaps the supervisor's start, and
        # init's attach below comes while the lock is still quick to take.
        try:
            supervisors.attach(child)
        except ProcessLookupError:
            pass            # it died at once: its answer below says why
        with os.fdopen(ready_r, "rb") as f:
            answer = f.readline().decode(errors="replace").split()
        if len(answer) != 3 or answer[0] != "ok":
            os.close(go_w)
            raise LaunchFailed(" ".join(answer[1:]) or "the supervisor died before starting init")
        forked = Forked(int(answer[1]), int(answer[2]), go_w)
        try:
            tracking.attach(forked.init_pid)
        except ProcessLookupError:
            pass            # init ended already (its set-up failed): nothing of it runs; its report says why
        except BaseException:
            forked.abort()
            raise
        return forked

    def reap(self, supervisor_pid: int) -> None:
        """Collect an exited supervisor that this process forked, so that it leaves no zombie.
        (A double fork would avoid this, at the price of one more fork per launch.)"""
        if supervisor_pid in self._children:
            try:
                if os.waitpid(supervisor_pid, os.WNOHANG)[0]:
                    self._children.discard(supervisor_pid)
            except ChildProcessError:
                self._children.discard(supervisor_pid)

    def kill_all(self, container_id: str) -> None:
        self.tracking_cgroup(container_id).kill()

    def pids(self, container_id: str) -> list[int]:
        return self.tracking_cgroup(container_id).procs()

    def cleanup(self, container_id: str) -> None:
        tracking = self.tracking_cgroup(container_id)
        tracking.kill()
        tracking.remove()

    def container_ids(self) -> set[str]:
        """Containers that have a tracking cgroup: what recovery compares with the checkpoint."""
        top = os.path.dirname(self.tracking_cgroup("x").path)
        try:
            return {e.name for e in os.scandir(top) if e.is_dir() and e.name != SUPERVISORS}
        except FileNotFoundError:
            return set()
