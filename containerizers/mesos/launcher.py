"""The launcher: forks a container's supervisor and init, and tracks every process of the
container in one cgroup so that all of them can be killed (Mesos: LinuxLauncher).

Tracking uses the hierarchy corral.cgroups.tracking_controller() names: cgroup2's wherever one
is mounted, else the v1 freezer's. No cgroup.procs write stands on the launch path: such a write
takes the kernel's cgroup_threadgroup_rwsem, whose first writer after a quiet spell waits an RCU
grace period (5-15 ms here, more than the rest of a launch). The supervisor and init are cloned
straight into their cgroup2 cgroups (clone3, CLONE_INTO_CGROUP; on a pure cgroup2 host the
tracking cgroup is every controller's cgroup too), and init joins its v1 cgroups itself, each
with a write of "0" to a file the launcher opens for it (Cgroup.join_files), which takes no
global lock. Only a v1-only host's freezer tracking is written by the launcher.
"""

from __future__ import annotations

import os
import select
import signal
from corral import cgroups, linux
from corral.record import Record
from corral.types import CorralError, check_cgroups_root

from . import supervisor


class LaunchFailed(CorralError):
    pass


class Forked(Record):
    """A container whose init exists and waits for release(). `ended_fd`: the supervisor's read
    end of its supervisor.Ended pipe, as an fd number in the supervisor (pids.json), for
    waiters to copy with pidfd_getfd."""
    supervisor_pid: int
    init_pid: int
    go_fd: int
    ended_fd: int | None = None

    def release(self) -> None:
        """Let init exec the task. An init whose set-up failed waits for this (its report is the
        container's end); one killed meanwhile cannot hear it, and the supervisor records its end."""
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


_CGROUP_DIR = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC    # what CLONE_INTO_CGROUP takes

# The tracking cgroup of every supervisor. A leading dot: no container id can take the name.
SUPERVISORS = ".supervisors"


class Launcher:
    def __init__(self, cgroups_root: str, tracking: str | None = None):
        self.cgroups_root = check_cgroups_root(cgroups_root)
        self.tracking = tracking or cgroups.tracking_controller()
        self.clone_into_cgroup = self.tracking == "unified"
        self._children: set[int] = set()   # supervisors forked here, to be reaped once they exit
        self._unreaped: set[int] = set()   # those a waiter saw end before they had exited

    def tracking_cgroup(self, container_id: str):
        return cgroups.container(self.tracking, self.cgroups_root, container_id)

    def fork(self, container_id: str, spec: supervisor.LaunchSpec, meanwhile=None) -> Forked:
        """Fork the container's supervisor, which forks its init; `meanwhile()`, if given, runs
        while the supervisor starts (work that needs no process of the container, done while
        we would only wait for init's pid)."""
        # fork() copies only the calling thread: another thread's locks would stay held forever
        # in the children. The agent forks through a single-threaded launcher process instead.
        if len(os.listdir("/proc/self/task")) > 1:
            raise LaunchFailed("the launcher must fork from a single-threaded process")
        # Supervisors a waiter saw end before they had exited; not every child (a waitpid per
        # running container on every launch).
        for pid in list(self._unreaped):
            self.reap(pid)
        tracking = self.tracking_cgroup(container_id)
        tracking.create()
        supervisors = self.tracking_cgroup(SUPERVISORS)
        supervisors.create()
        try:
            files = supervisor.task_files(spec)
        except (OSError, CorralError) as e:
            raise LaunchFailed(f"cannot open the task's output: {e}") from None
        child = cloned = into_supervisors = into_tracking = execs = ended = None
        joins = []
        try:
            try:
                execs = supervisor.exec_listener(spec)
            except OSError as e:
                raise LaunchFailed(f"cannot make the exec socket: {e}") from None
            try:
                ended = supervisor.Ended.make()
            except OSError as e:
                raise LaunchFailed(f"cannot make the supervisor's pipe: {e.strerror}") from None
            # What init joins itself: the cgroups of spec.cgroups but the one it is cloned or moved into.
            for cgroup in spec.cgroups:
                if cgroup.path != tracking.path:
                    for path in cgroup.join_files():
                        try:
                            joins.append(os.open(path, os.O_WRONLY | os.O_CLOEXEC))
                        except OSError as e:
                            raise LaunchFailed(f"cannot join cgroup {cgroup.path}: {e.strerror}") from None
            if self.clone_into_cgroup:
                into_supervisors = os.open(supervisors.path, _CGROUP_DIR)
                into_tracking = os.open(tracking.path, _CGROUP_DIR)
            ready_r, ready_w = os.pipe()
            go_r, go_w = os.pipe()
            if into_supervisors is not None:
                child = cloned = linux.fork_into_cgroup(into_supervisors)
            if cloned is None:
                child = os.fork()
            if child == 0:
                os.close(ready_r)
                os.close(go_w)
                supervisor.start(spec, ready_w, go_r, ended, into_tracking, files, execs, joins)   # never returns
        finally:
            if child != 0:          # the supervisor's now, or nobody's
                for fd in (into_supervisors, into_tracking, *(files or ()), *joins):
                    if fd is not None:
                        os.close(fd)
                for held in (execs, ended):
                    if held is not None:
                        held.close()
        self._children.add(child)
        os.close(ready_w)
        os.close(go_r)
        # A v1-only host's freezer: the supervisor is written into .supervisors right after the
        # fork, so that the first write's wait for a grace period overlaps its start, and init's
        # attach below comes while the lock is still quick to take.
        if cloned is None:
            try:
                supervisors.attach(child)
            except ProcessLookupError:
                pass            # it died at once: its answer below says why
        failed = None
        if meanwhile is not None:
            try:
                meanwhile()
            except BaseException as e:  # noqa: BLE001 - raised below, once init is stopped
                failed = e
        # The supervisor's one line; its end, once init has closed the pipe too, having joined
        # its cgroups (supervisor._join).
        with os.fdopen(ready_r, "rb") as f:
            answer = f.read().decode(errors="replace").split()
        ok = len(answer) == 3 and answer[0] == "ok"
        if failed is not None or not ok:
            if ok:
                Forked(int(answer[1]), int(answer[2]), go_w).abort()    # init never runs the task
            else:
                os.close(go_w)
            # A supervisor that answers anything but ok, or whose init we stopped, is exiting:
            # collect it now, so that no caller finds it still in <root>/.supervisors after the
            # launch has failed.
            os.waitpid(child, 0)
            self._children.discard(child)
            if failed is not None:
                raise failed
            raise LaunchFailed(" ".join(answer[1:]) or "the supervisor died before starting init")
        forked = Forked(int(answer[1]), int(answer[2]), go_w, ended.read)
        try:
            if cloned is None:          # else the supervisor cloned init into it (or failed the launch)
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
                exited = os.waitpid(supervisor_pid, os.WNOHANG)[0] != 0
            except ChildProcessError:
                exited = True
            if exited:
                self._children.discard(supervisor_pid)
                self._unreaped.discard(supervisor_pid)
            else:
                self._unreaped.add(supervisor_pid)      # the next fork collects it

    def await_exit(self, supervisor: dict | None, timeout: float = 1.0) -> None:
        """Wait up to `timeout` seconds for a supervisor (pids.json's pid and start time) that has
        written the container's end to exit, and reap it if it is ours."""
        if not supervisor:
            return
        pidfd = linux.pidfd_of(supervisor["pid"], supervisor["start"])
        if pidfd is not None:
            try:
                select.select([pidfd], [], [], timeout)
            finally:
                os.close(pidfd)
        self.reap(supervisor["pid"])

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
        return cgroups.container_ids(self.tracking, self.cgroups_root) - {SUPERVISORS}
