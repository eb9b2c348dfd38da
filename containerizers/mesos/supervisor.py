"""The processes a launch forks: the supervisor, the container's init, and the task.

    launcher ──fork──▶ supervisor        own session, host pid ns, outside the container's cgroups
                          │ unshare(NEWPID), fork
                          ▼
                         init             PID 1 of the container; cloned into its cgroup2 cgroup, joins
                                          its v1 cgroups itself, then sets up and waits
                          │ "go": spawn
                          ▼
                         task             the command

The supervisor outlives whoever launched it (its parent only reaps it, if still there) and
writes the task's raw wait status to the runtime dir when the container ends; it sits outside
the container's cgroups, so its memory is not charged to the task. init forwards signals to
the task and reaps orphans, as Mesos's launch helper and tini do, so the task is not PID 1 and
behaves as on the host. Once the task runs, init also serves execs: it forks commands into the
container on request (execserver.py), over the socket the launcher binds before forking.

Nothing here may return into the caller's code: every path ends in os._exit or exec.
"""

from __future__ import annotations

import _signal as signal     # signal's C core: its answers plain numbers, not the wrapper's enums (see FORWARDED)
import errno
import gc
import json
import os
import time

import prctl

from corral import linux
from corral.files import find_program, open_beneath, write_atomic
from corral.record import Record

from . import execserver

# Signals init passes on to the task; synchronous faults and SIGCHLD are init's own. Plain
# numbers, not signal.Signals: the signal module's wrappers turn every answer into an enum, which
# runs enum's code, and each enum member is an object every use writes (its reference count):
# pages copied in a forked supervisor or init (~80 of them).
_NOT_FORWARDED = {signal.SIGCHLD, signal.SIGKILL, signal.SIGSTOP, signal.SIGSEGV, signal.SIGBUS,
                  signal.SIGFPE, signal.SIGILL, signal.SIGTRAP, signal.SIGSYS}
FORWARDED = frozenset(s for s in signal.valid_signals() if s not in _NOT_FORWARDED and s < signal.SIGRTMIN)


class LaunchSpec(Record):
    """Everything the forked processes need, resolved beforehand by the containerizer (from the
    config, the isolators' LaunchInfo and the user: SyncMesosContainerizer._launch_spec) and
    handed to Launcher.fork."""
    argv: list[str]
    env: dict[str, str]
    cwd: str
    stdout_path: str
    stderr_path: str
    status_path: str
    namespaces: frozenset[str]
    hostname: str | None = None
    rootfs: str | None = None
    rootfs_mount: object = None       # isolators.Mount
    mounts: list = list
    symlinks: dict = dict
    uid: int | None = None
    gid: int | None = None
    groups: tuple[int, ...] = ()
    confinement: object = None        # corral.confine.Steps: applied last, before the task's exec
    io: object = None                 # switchboard.IOSpec: the supervisor holds the task's I/O
    exec_socket: str | None = None    # where init serves execs (execserver.py); None: it does not
    cgroups: list = list              # the isolators' cgroups (LaunchInfo.cgroups): init joins them


def task_files(spec: LaunchSpec) -> tuple[int, int, int] | None:
    """The task's stdin (/dev/null), stdout and stderr files, opened by the launcher before it
    forks (what the Python code of opening them touches, a fork would copy page by page); None
    where the supervisor holds the task's I/O (spec.io) and makes its own."""
    if spec.io is not None:
        return None
    fds = [os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)]
    try:
        # A sandbox kept from an earlier container of this id may hold its task's links in their place.
        for path in (spec.stdout_path, spec.stderr_path):
            fds.append(open_beneath(os.path.dirname(path), os.path.basename(path), os.O_WRONLY | os.O_CREAT | os.O_APPEND))
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return fds[0], fds[1], fds[2]


class Ended(Record):
    """The waiters' cue: a pipe whose write end the supervisor closes once it has written the
    container's status, so that its read end hangs up then, sooner than the supervisor's exit
    (which first tears down its copy of the launcher's address space, ~0.5 ms). The supervisor
    keeps the read end open till its exit, for waiters to copy (pids.json: "ended_fd"): no file
    names it (a file is an inode allocation per launch, see docs/ARCHITECTURE.md), and the
    waiters, in a process that has corral.linux (ctypes) loaded anyway, copy it with
    pidfd_getfd."""
    read: int
    write: int

    @classmethod
    def make(cls) -> "Ended":
        return cls(*os.pipe2(os.O_CLOEXEC))

    def close(self) -> None:
        os.close(self.read)
        os.close(self.write)


def exec_listener(spec: LaunchSpec):
    """The socket init serves execs on (execserver.listen), bound by the launcher before it forks
    (for the same reason as task_files), so that it is there once the launch returns; None where
    init serves none. A path, not an fd to copy (as Ended): a cold `corral exec` connects to it
    without ctypes' import (pidfd_getfd), ~2 ms of its ~14."""
    return execserver.listen(spec.exec_socket) if spec.exec_socket else None


def start(spec: LaunchSpec, ready_w: int, go_r: int, ended: Ended, init_cgroup: int | None = None,
          files: tuple[int, int, int] | None = None, execs=None, joins: list[int] = ()) -> None:
    """Run in the launcher's child: become the supervisor; never return. `init_cgroup`: an open
    cgroup2 directory to clone init straight into (else the launcher moves it there); `files`:
    task_files(spec), the task's stdin, stdout and stderr (None where spec.io has the supervisor
    hold them); `execs`: exec_listener(spec); `joins`: open files init writes "0" to, to join its
    other cgroups (Cgroup.join_files)."""
    # No garbage collection here or in init: a collection walks the launcher's objects, which
    # this fork shares, and copies most of its heap page by page (milliseconds a launch).
    gc.disable()
    try:
        os.setsid()
        _supervise(spec, ready_w, go_r, ended, init_cgroup, files, execs, joins)
    except BaseException as e:  # noqa: BLE001 - nothing may escape into the launcher's code
        _report(ready_w, f"error supervisor: {e}")
    os._exit(1)


def _report(fd: int, line: str) -> None:
    try:
        os.write(fd, line.encode() + b"\n")
    except OSError:
        pass


def _describe(e: BaseException) -> str:
    """An error as one line: an OSError's own words (corral's name the step), and the file it
    names when the step does not."""
    if isinstance(e, OSError) and e.strerror:
        return f"{e.strerror}: {e.filename}" if e.filename else e.strerror
    return str(e) or type(e).__name__


def _supervise(spec: LaunchSpec, ready_w: int, go_r: int, ended: Ended, init_cgroup: int | None,
               files: tuple[int, int, int] | None, execs, joins: list[int]) -> None:
    # Only SIGKILL ends the supervisor; the launcher's own handlers must not run here.
    for sig in FORWARDED:
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    prctl.set_child_subreaper(True)
    board = None
    if spec.io is not None:
        from .switchboard import Switchboard
        board = Switchboard(spec.io, os.path.dirname(spec.stdout_path),
                            (spec.uid, spec.gid) if spec.uid is not None else None)
        task_fds = board.task_fds()
    else:
        task_fds = files
    for fd, target in zip(task_fds, (0, 1, 2)):
        os.dup2(fd, target)
    for fd in set(task_fds):
        os.close(fd)
    status_r, status_w = os.pipe()
    # Close what the launcher had open (its sockets, pidfds, pipes): the supervisor lives long.
    linux.close_fds_except({ready_w, go_r, ended.read, ended.write, status_r, status_w, init_cgroup,
                            execs.fileno() if execs else None, *joins, *(board.own_fds() if board else ())})
    if "pid" in spec.namespaces:
        linux.unshare(linux.CLONE_NEWPID)   # the next child is PID 1 of a new namespace
    # init is born ignoring what it forwards (our SIG_IGN), and a signal sent to an ignored
    # signal is dropped: a kill right after the launch, before init's handlers exist, would be
    # lost. Born with them blocked instead, init gets such a signal queued (Linux queues a
    # blocked signal even while it is ignored) and handles it once it unblocks them.
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    init = linux.fork_into_cgroup(init_cgroup) if init_cgroup is not None else None
    if init is None:
        init = os.fork()
    if init == 0:
        os.close(status_r)
        ended.close()
        if init_cgroup is not None:
            os.close(init_cgroup)
        for fd in board.own_fds() if board else ():
            os.close(fd)
        _init(spec, ready_w, go_r, status_w, execs, joins)
    # The launcher waits for this line: the rest of our set-up comes after it. (Each first
    # write to a page since init's fork copies that page: the fewer before it, the sooner.)
    _report(ready_w, f"ok {os.getpid()} {init}")
    os.close(ready_w)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)     # what came meanwhile we ignore
    if execs is not None:
        execs.close()
    if init_cgroup is not None:
        os.close(init_cgroup)
    for fd in joins:
        os.close(fd)
    os.close(go_r)
    os.close(status_w)

    if board is not None:
        board.forked()
        try:
            board.serve(init)           # returns once init has ended
        except Exception:  # noqa: BLE001 - the I/O is lost, not the container's end: that is still recorded
            board.abandon()
    init_status = _reap_until(init)
    with os.fdopen(status_r, "rb") as f:
        report = f.read().decode(errors="replace").split(" ", 1)
    status = {"init_status": init_status, "task_status": None, "task_ended": None, "error": None}
    if report[0] == "exit" and len(report) > 1:
        status["task_status"], status["task_ended"] = (int(field) for field in report[1].split())
    elif report[0] == "error" and len(report) > 1:
        status["error"] = report[1].strip()
    write_atomic(spec.status_path, json.dumps(status) + "\n")
    os.close(ended.write)   # the waiters' cue (Ended), before our exit's teardown
    os._exit(0)


def _reap_until(pid: int) -> int:
    """Wait for `pid`, reaping any orphan that reaches us meanwhile (we are a subreaper)."""
    while True:
        try:
            reaped, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 0
        if reaped == pid:
            return status


def _init(spec: LaunchSpec, ready_w: int, go_r: int, status_w: int, execs, joins: list[int]) -> None:
    task = None
    pending: list[int] = []

    def forward(signum, _frame):
        if task is None:
            pending.append(signum)
        else:
            _signal(task, signum)
    try:
        try:
            _join(joins)
        finally:
            # The launcher reads the supervisor's answer to its end, which comes once init has
            # closed this too: when fork() returns, init is in all its cgroups.
            os.close(ready_w)
        prctl.set_pdeathsig(signal.SIGKILL)   # a dead supervisor can record nothing: end with it
        for sig in FORWARDED:
            signal.signal(sig, forward)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)     # born blocked: see _supervise
        prctl.set_child_subreaper(True)
        _enter_namespaces(spec)
        _confine(spec)                      # while the launcher limits our cgroups: in parallel
        server = execserver.Server(execs, spec, FORWARDED, lambda status: _task_ended(status_w, status)) \
            if execs is not None else None
    except BaseException as e:  # noqa: BLE001
        _setup_failed(status_w, go_r, f"cannot set up the container: {_describe(e)}")
    try:
        if os.read(go_r, 1) != b"g":        # the launcher failed to isolate us: never run the task
            os._exit(1)
        os.close(go_r)
        task = _spawn_task(spec)
    except BaseException as e:  # noqa: BLE001
        _report(status_w, f"error {_describe(e)}")
        # As shells do: 127 for a command not found, 126 for one that cannot run.
        os._exit({errno.ENOENT: 127, errno.EACCES: 126, errno.ENOEXEC: 126}.get(getattr(e, "errno", None), 1))
    if spec.io is not None:
        for fd in (0, 1, 2):
            os.close(fd)        # the task's ends are the task's: a stdin init held would never see EPIPE
    for signum in pending:
        _signal(task, signum)
    if server is not None:
        try:
            server.serve(task)
        except Exception:  # noqa: BLE001 - serving execs fails alone; reaping the task goes on
            execs.close()
            signal.set_wakeup_fd(-1)
    _reap_until_task(task, status_w)


def _join(joins: list[int]) -> None:
    """Move init into the container's cgroups, first thing: "0" moves the writing thread (the
    launcher's Cgroup.join_files: no global lock), and init's one thread is all of it."""
    for fd in joins:
        try:
            os.write(fd, b"0")
        except OSError as e:
            raise OSError(e.errno, f"cannot join the container's cgroups: {e.strerror}") from None
        os.close(fd)


def _setup_failed(status_w: int, go_r: int, message: str) -> None:
    """Report why the container could not be set up, then exit once the launcher is done with
    init (its "go", or the pipe closed): an init gone while the launcher still moves it into the
    container's cgroups would turn the cause into that move's ESRCH."""
    _report(status_w, f"error {message}")
    try:
        os.read(go_r, 1)
    except OSError:
        pass
    os._exit(1)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _enter_namespaces(spec: LaunchSpec) -> None:
    flags = linux.CLONE_NEWNS
    if "uts" in spec.namespaces:
        flags |= linux.CLONE_NEWUTS
    if "ipc" in spec.namespaces:
        flags |= linux.CLONE_NEWIPC
    linux.unshare(flags)
    # Nothing mounted here may propagate back to the host.
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    if spec.rootfs:
        from .mounts import enter_rootfs
        enter_rootfs(spec.rootfs, spec.rootfs_mount, spec.mounts, spec.symlinks)
    elif "pid" in spec.namespaces:
        linux.mount("proc", "/proc", "proc", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
    if spec.hostname:
        linux.sethostname(spec.hostname)


def _confine(spec: LaunchSpec) -> None:
    """init's last step of its own: capabilities, no_new_privs, seccomp, masks, rlimits, device
    nodes (corral/confine.py). It runs before init waits for the launcher's go, so that its cost
    overlaps the launcher's cgroup writes. init itself is confined too: what it does after this
    (wait for go, spawn the task, forward signals, reap) needs none of what confinement takes."""
    if spec.confinement is not None:
        spec.confinement.apply()     # corral.confine.Steps


def _spawn_task(spec: LaunchSpec) -> int:
    """Start the task; raises OSError if it could not be executed."""
    execserver.enter_directory(spec.cwd)
    program = _which(spec.argv[0], spec.env.get("PATH", ""))
    if spec.uid is None and "pid" in spec.namespaces and not (spec.io and spec.io.tty):
        # The fast path: posix_spawn's vfork copies no page tables. It can neither change user,
        # nor set a parent-death signal (the pid namespace ends the task with init anyway), nor
        # take a controlling terminal.
        try:
            return os.posix_spawn(program, spec.argv, spec.env, setsigmask=(),
                                  setsigdef=FORWARDED | {signal.SIGCHLD})
        except OSError as e:
            raise OSError(e.errno, f"failed to execute {spec.argv[0]!r}: {e.strerror}") from None
    return _fork_task(spec, program)


def _which(name: str, path: str) -> str:
    program = find_program(name, path)
    if program is None:
        raise OSError(errno.ENOENT, f"failed to execute {name!r}: not found in PATH")
    return program


def _fork_task(spec: LaunchSpec, program: str) -> int:
    """fork, change user, exec; returns the pid once exec succeeded, raises if it failed."""
    exec_r, exec_w = os.pipe2(os.O_CLOEXEC)
    task = os.fork()
    if task == 0:
        try:
            os.close(exec_r)
            prctl.set_pdeathsig(signal.SIGKILL)
            for sig in FORWARDED | {signal.SIGCHLD}:
                signal.signal(sig, signal.SIG_DFL)
            execserver.set_user(spec.uid, spec.gid, spec.groups)
            if spec.io is not None and spec.io.tty:
                os.setsid()                 # its own session, the pty its controlling terminal
                execserver.take_terminal()
            os.execve(program, spec.argv, spec.env)
        except BaseException as e:  # noqa: BLE001
            os.write(exec_w, f"{getattr(e, 'errno', 0) or 0} {_describe(e)}".encode())
        os._exit(127)
    os.close(exec_w)
    with os.fdopen(exec_r, "rb") as f:
        failure = f.read().decode(errors="replace")
    if failure:
        os.waitpid(task, 0)
        code, _, message = failure.partition(" ")
        raise OSError(int(code or 0), f"failed to execute {spec.argv[0]!r}: {message}")
    return task


def _reap_until_task(task: int, status_w: int) -> None:
    """init's loop: reap every child (signals are forwarded by the handler meanwhile); end with the task."""
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(1)
        if pid == task:
            _task_ended(status_w, status)


def _task_ended(status_w: int, status: int) -> None:
    # When it ended, on the clock kill records use: a kill recorded later ended nothing.
    _report(status_w, f"exit {status} {time.monotonic_ns()}")
    # Leaving now ends the pid namespace: the kernel kills what the task left behind, execs too.
    os._exit(0)
