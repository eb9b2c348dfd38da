"""The processes a launch forks: the supervisor, the container's init, and the task.

    launcher ──fork──▶ (intermediate, exits) ──fork──▶ supervisor        host pid ns, launcher's cgroups
                                                          │ unshare(NEWPID), fork
                                                          ▼
                                                         init             PID 1 of the container; in its cgroups
                                                          │ waits for "go", fork
                                                          ▼
                                                         task             execs the command

The supervisor outlives whoever launched it and writes the task's raw wait status to the
runtime dir when the container ends; it sits outside the container's cgroups, so its memory
is not charged to the task. init forwards signals to the task and reaps orphans, as
Mesos's launch helper and tini do, so the task is not PID 1 and behaves as on the host.

Nothing here may return into the caller's code: every path ends in os._exit or exec.
"""

from __future__ import annotations

import errno
import json
import os
import signal
from dataclasses import dataclass

import prctl

from corral import linux
from corral.files import write_atomic

# Signals init passes on to the task; synchronous faults and SIGCHLD are init's own.
_NOT_FORWARDED = {signal.SIGCHLD, signal.SIGKILL, signal.SIGSTOP, signal.SIGSEGV, signal.SIGBUS,
                  signal.SIGFPE, signal.SIGILL, signal.SIGTRAP, signal.SIGSYS}
FORWARDED = {s for s in signal.valid_signals() if s not in _NOT_FORWARDED and s < signal.SIGRTMIN}
_SUPERVISOR_IGNORES = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGPIPE,
                       signal.SIGUSR1, signal.SIGUSR2, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)


@dataclass
class LaunchSpec:
    """Everything the forked processes need, resolved by the launcher beforehand."""
    argv: list[str]
    env: dict[str, str]
    cwd: str
    stdout_path: str
    stderr_path: str
    status_path: str
    namespaces: frozenset[str]
    hostname: str | None = None
    uid: int | None = None
    gid: int | None = None
    groups: tuple[int, ...] = ()


def start(spec: LaunchSpec, ready_w: int, go_r: int) -> None:
    """Run in the intermediate child: detach, fork the supervisor, and exit."""
    try:
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        _supervise(spec, ready_w, go_r)
    except BaseException as e:  # noqa: BLE001 - nothing may escape into the launcher's code
        _report(ready_w, f"error supervisor: {e}")
    os._exit(1)


def _report(fd: int, line: str) -> None:
    try:
        os.write(fd, line.encode() + b"\n")
    except OSError:
        pass


def _describe(e: BaseException) -> str:
    return e.strerror if isinstance(e, OSError) and e.strerror else str(e)


def _keep_only_fds(keep: set[int]) -> None:
    """Close what the launcher had open (its sockets, pidfds, pipes): the supervisor lives long."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _supervise(spec: LaunchSpec, ready_w: int, go_r: int) -> None:
    for sig in _SUPERVISOR_IGNORES:
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    prctl.set_child_subreaper(True)
    stdin = os.open("/dev/null", os.O_RDONLY)
    stdout = os.open(spec.stdout_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    stderr = os.open(spec.stderr_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
        os.dup2(fd, target)
        os.close(fd)
    status_r, status_w = os.pipe()
    _keep_only_fds({ready_w, go_r, status_r, status_w})
    if "pid" in spec.namespaces:
        linux.unshare(linux.CLONE_NEWPID)   # the next child is PID 1 of a new namespace
    init = os.fork()
    if init == 0:
        os.close(ready_w)
        os.close(status_r)
        _init(spec, go_r, status_w)
    os.close(go_r)
    os.close(status_w)
    _report(ready_w, f"ok {os.getpid()} {init}")
    os.close(ready_w)

    init_status = _reap_until(init)
    with os.fdopen(status_r, "rb") as f:
        report = f.read().decode(errors="replace").split(" ", 1)
    status = {"init_status": init_status, "task_status": None, "error": None}
    if report[0] == "exit" and len(report) > 1:
        status["task_status"] = int(report[1])
    elif report[0] == "error" and len(report) > 1:
        status["error"] = report[1].strip()
    write_atomic(spec.status_path, json.dumps(status) + "\n")
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


def _init(spec: LaunchSpec, go_r: int, status_w: int) -> None:
    try:
        prctl.set_pdeathsig(signal.SIGKILL)   # a dead supervisor can record nothing: end with it
        signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED | {signal.SIGCHLD})
        prctl.set_child_subreaper(True)
        _enter_namespaces(spec)
        if os.read(go_r, 1) != b"g":        # the launcher failed to isolate us: never run the task
            os._exit(1)
        os.close(go_r)
        task = _fork_task(spec)
    except BaseException as e:  # noqa: BLE001
        _report(status_w, f"error {_describe(e)}")
        # As shells do: 127 for a command not found, 126 for one that cannot run.
        code = {errno.ENOENT: 127, errno.EACCES: 126, errno.ENOEXEC: 126}.get(getattr(e, "errno", None), 1)
        os._exit(code)
    _forward_and_reap(task, status_w)


def _enter_namespaces(spec: LaunchSpec) -> None:
    flags = linux.CLONE_NEWNS
    if "uts" in spec.namespaces:
        flags |= linux.CLONE_NEWUTS
    if "ipc" in spec.namespaces:
        flags |= linux.CLONE_NEWIPC
    linux.unshare(flags)
    # Nothing mounted here may propagate back to the host.
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    if "pid" in spec.namespaces:
        linux.mount("proc", "/proc", "proc", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
    if spec.hostname:
        linux.sethostname(spec.hostname)


def _fork_task(spec: LaunchSpec) -> int:
    """Fork and exec the task; returns its pid once exec succeeded, raises if it failed."""
    exec_r, exec_w = os.pipe2(os.O_CLOEXEC)
    task = os.fork()
    if task == 0:
        try:
            os.close(exec_r)
            _exec_task(spec)
        except BaseException as e:  # noqa: BLE001
            os.write(exec_w, f"{getattr(e, 'errno', 0) or 0} {_describe(e)}".encode())
        os._exit(127)
    os.close(exec_w)
    with os.fdopen(exec_r, "rb") as f:
        failure = f.read().decode(errors="replace")
    if failure:
        os.waitpid(task, 0)
        _errno, _, message = failure.partition(" ")
        raise OSError(int(_errno or 0), f"failed to execute {spec.argv[0]!r}: {message}")
    return task


def _exec_task(spec: LaunchSpec) -> None:
    prctl.set_pdeathsig(signal.SIGKILL)
    for sig in signal.valid_signals():
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(sig, signal.SIG_DFL)   # Python ignores SIGPIPE and SIGXFSZ; exec keeps ignores
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    os.chdir(spec.cwd)
    if spec.gid is not None:
        os.setgroups(list(spec.groups))
        os.setgid(spec.gid)
    if spec.uid is not None:
        os.setuid(spec.uid)
    os.execvpe(spec.argv[0], spec.argv, spec.env)


def _forward_and_reap(task: int, status_w: int) -> None:
    """init's loop: pass signals on to the task, reap every child, end when the task ends."""
    watched = FORWARDED | {signal.SIGCHLD}
    while True:
        info = signal.sigwaitinfo(watched)
        if info.si_signo != signal.SIGCHLD:
            try:
                os.kill(task, info.si_signo)
            except ProcessLookupError:
                pass
            continue
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pid = 0
            if pid == 0:
                break
            if pid == task:
                # Leaving now ends the pid namespace: the kernel kills what the task left behind.
                _report(status_w, f"exit {status}")
                os._exit(0)
