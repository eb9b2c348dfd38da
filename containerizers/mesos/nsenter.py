"""Exec by joining the container from outside: the command forked by the caller into the
container's namespaces and cgroups, where its init does not serve execs (execserver.py: a
seccomp filter that forbids what init serves with, or a container launched by an older corral).

    caller ──setns(pid of init: CLONE_NEWPID, for its children only)──fork──▶ command
                                                                     │ setsid, its stdio (a pty: its tty)
                                                                     │ setns(init: mnt uts ipc net cgroup)
                                                                     │ confined as the task: rlimits,
                                                                     │ capabilities, no_new_privs, seccomp
                                                                     │ in the container's cgroups
                                                                     ▼ execve

The command is the caller's child, so the caller waits for its exit status, and PID N of the
container's pid namespace, whose init reaps it should the caller go first. It is in every
cgroup of the container, those init is in (/proc/PID/cgroup: the tracking cgroup and each
isolator's, as the launch placed init): cloned into it on a pure cgroup2 host (clone3, as the
launcher does), else written into each cgroup.procs by the caller while the command sets
itself up and confines itself, which then waits for that before it may exec. So it
counts against the container's limits, and the container's end (cgroup.kill, or the end of its
pid namespace) ends it too.

It gets what the task got, as the launch recorded it in the runtime dir's exec.json: the task's
environment, user and working directory, and its confinement (the capability sets, no_new_privs,
the seccomp filter, the rlimits; masks and device nodes are the mount namespace's already). Exec
is never a way out of the container. --user names a user of the container's /etc/passwd.

The caller must be single-threaded (it forks; the agent execs through a process of its own).
"""

from __future__ import annotations

import binascii
import errno
import os
import _signal as signal     # signal's C core: the signal module imports enum, milliseconds of a cold exec

from corral import cgroups, linux
from corral.types import CorralError, ExecConfig, ExecFailed, NotRunning

from ..execution import exit_code
from ..state import ContainerFiles
from .exec import CommandExecution, command_stdio
from .execserver import container_program, container_user, enter_directory, set_user, take_terminal

# The namespaces the command joins beside the pid one: a kind the container does not have is
# the host's, and joining it changes nothing.
_JOINED = linux.CLONE_NEWNS | linux.CLONE_NEWUTS | linux.CLONE_NEWIPC | linux.CLONE_NEWNET | linux.CLONE_NEWCGROUP
_IGNORED_BY_PYTHON = (signal.SIGPIPE, signal.SIGXFSZ)   # exec keeps SIG_IGN: the command gets the default


def session_record(spec) -> dict:
    """What an exec needs of the task's launch (supervisor.LaunchSpec), for exec.json."""
    return {"env": spec.env, "cwd": spec.cwd, "uid": spec.uid, "gid": spec.gid, "groups": list(spec.groups),
            "confinement": _confinement_record(spec.confinement)}


# Records made, by Steps object. Not functools.lru_cache: functools (collections, operator) is
# milliseconds of a cold exec, which imports this module too.
_confinement_records: dict = {}


def _confinement_record(steps) -> dict | None:
    """A launch's confinement (corral.confine.Steps, the same object for the same confinement)
    as exec.json holds it: encoded once, not per launch (the seccomp program is 10 kB)."""
    if steps is None:
        return None
    record = _confinement_records.get(steps)
    if record is None:
        if len(_confinement_records) >= 64:      # as confine.steps(): stays small
            _confinement_records.clear()
        record = _confinement_records[steps] = _encode_confinement(steps.confinement)
    return record


def _encode_confinement(c) -> dict:
    return {
        "bounding": sorted(c.bounding) if c.bounding is not None else None,
        "effective": sorted(c.effective) if c.effective is not None else None,
        "no_new_privs": c.no_new_privs,
        "seccomp_filter": binascii.b2a_base64(c.seccomp_filter, newline=False).decode() if c.seccomp_filter is not None else None,
        "rlimits": [list(r) for r in c.rlimits],
    }


def _confinement(record: dict | None):
    """The task's confinement, but what is done once for the whole container (masks, device
    nodes), made ready (corral.confine.Steps) before the fork."""
    if record is None:
        return None
    from corral.confine import Confinement, steps
    seccomp = record.get("seccomp_filter")
    return steps(Confinement(
        bounding=frozenset(record["bounding"]) if record.get("bounding") is not None else None,
        effective=frozenset(record["effective"]) if record.get("effective") is not None else None,
        no_new_privs=bool(record.get("no_new_privs")),
        seccomp_filter=binascii.a2b_base64(seccomp) if seccomp is not None else None,
        rlimits=tuple(tuple(r) for r in record.get("rlimits") or ())))


class MesosExecution(CommandExecution):
    """A command forked here into the container: our child, whose status we wait for."""

    def __init__(self, pid: int, master: int | None, stdout: int):
        super().__init__(master, stdout)
        self.pid = pid
        self._status: int | None = None

    def signal(self, sig: int) -> None:
        """To the command's process group, as InitExecution.signal."""
        if self._status is None:
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                pass

    def wait(self) -> int:
        if self._status is None:
            self._status = os.waitpid(self.pid, 0)[1]
        return exit_code(self._status)


def start(files: ContainerFiles, cgroups_root: str, config: ExecConfig, stdio: tuple[int, int, int],
          session: dict) -> MesosExecution:
    """Fork the command into the container of `files`, whose cgroups are under `cgroups_root`,
    as its exec.json (`session`) says (exec.py's start())."""
    if len(os.listdir("/proc/self/task")) > 1:
        # As the launcher: a fork copies this thread alone, and another's locks stay held in the child.
        raise CorralError("exec must fork from a single-threaded process")
    container_id = files.container_id
    init = files.pids().get("init") or {}
    pidfd = _open_init(files, init)
    # init's root, which joining its mount namespace does not give: setns puts us at the
    # namespace's root mount, and init's root is elsewhere when corral itself runs chrooted.
    root = os.open(f"/proc/{init['pid']}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    master = into_cgroup = report_r = report_w = go_r = go_w = None
    handed = ()
    child = None
    caller_stdout = stdio[1]
    try:
        if files.termination() is not None:
            raise NotRunning(container_id, "has ended")
        places = cgroups.directories_of(init["pid"], cgroups_root, container_id)
        if not places:
            raise CorralError(f"container {container_id}'s init is in no cgroup under {cgroups_root}: "
                              "was it launched with another cgroups root?")
        plan = _plan(session, config)
        report_r, report_w = os.pipe2(os.O_CLOEXEC)
        go_r, go_w = os.pipe2(os.O_CLOEXEC)
        stdio, master, handed = command_stdio(config, stdio)
        if cgroups.single_hierarchy():      # one cgroup2 directory is all of them: clone into it
            into_cgroup = os.open(places[0], os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        child = _fork_in_pid_namespace(pidfd, into_cgroup)
        if child == 0:
            _command(plan, pidfd, root, stdio, config.tty, report_w, None if into_cgroup is not None else go_r)
        os.close(report_w)
        report_w = None
        if into_cgroup is None:
            for place in places:
                _write_procs(place, child)
        os.write(go_w, b"g")
        os.close(go_w)
        go_w = None
        with os.fdopen(report_r, "rb") as f:
            report_r, failure = None, f.read().decode(errors="replace")
        if failure:
            os.waitpid(child, 0)
            child = None
            code, _, message = failure.partition(" ")
            raise ExecFailed(message, int(code))
        execution = MesosExecution(child, master, caller_stdout)
        master = None
        return execution
    except BaseException:
        if child:
            _kill_and_reap(child)
        raise
    finally:
        for fd in (pidfd, root, *handed, into_cgroup, report_r, report_w, go_r, go_w, master):
            if fd is not None:
                os.close(fd)


def _write_procs(place: str, pid: int) -> None:
    fd = os.open(os.path.join(place, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, str(pid).encode())
    finally:
        os.close(fd)


def _open_init(files: ContainerFiles, init: dict) -> int:
    """A pidfd of the container's init, as pids.json names it; NotRunning when it is gone."""
    pidfd = linux.pidfd_of(init.get("pid"), init.get("start"))
    if pidfd is None:
        raise NotRunning(files.container_id, "has no running init" if files.status() is None else "has ended")
    return pidfd


def _kill_and_reap(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _fork_in_pid_namespace(pidfd: int, into_cgroup: int | None) -> int:
    """fork() with the child in init's pid namespace (and in `into_cgroup`, where given): the
    caller's own namespace for its children is put back at once."""
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        linux.setns(pidfd, linux.CLONE_NEWPID)
        try:
            child = linux.fork_into_cgroup(into_cgroup) if into_cgroup is not None else None
            if child is None:
                if into_cgroup is not None:
                    raise OSError(errno.ENOSYS, "clone3 with CLONE_INTO_CGROUP is not available")
                child = os.fork()
        finally:
            if child != 0:
                linux.setns(own, linux.CLONE_NEWPID)
    finally:
        if child != 0:
            os.close(own)
    return child


class _Plan:
    """What the child does, resolved in the caller (whose imports still work: the child's
    filesystem is the container's once it has joined the mount namespace)."""

    def __init__(self, argv, env, cwd, user, uid, gid, groups, confinement):
        self.argv, self.env, self.cwd = argv, env, cwd
        self.user, self.uid, self.gid, self.groups = user, uid, gid, groups
        self.confinement = confinement


def _plan(session: dict, config: ExecConfig) -> _Plan:
    confinement = _confinement(session.get("confinement"))      # corral.confine imported, with all it needs
    # What the child imports is imported here, before it leaves the host's filesystem.
    if confinement is not None and confinement.rlimits:
        import resource  # noqa: F401
    env = dict(session["env"])
    env.update(config.env)
    cwd = os.path.join(session["cwd"], config.workdir) if config.workdir else session["cwd"]
    return _Plan(config.argv, env, cwd, config.user, session.get("uid"), session.get("gid"),
                 tuple(session.get("groups") or ()), confinement)


def _command(plan: _Plan, pidfd: int, root: int, stdio: tuple[int, int, int], tty: bool, report_w: int,
             go_r: int | None) -> None:
    """In the child: become the command in the container, or report why not; never return."""
    try:
        os.setsid()
        for fd, target in zip(stdio, (0, 1, 2)):
            if fd != target:
                os.dup2(fd, target)
            else:
                os.set_inheritable(fd, True)
        if tty:
            take_terminal()
        keep = {report_w, pidfd, root} | ({go_r} if go_r is not None else set())
        linux.close_fds_except(keep)
        linux.setns(pidfd, _JOINED)
        os.close(pidfd)
        os.fchdir(root)
        os.chroot(".")
        os.close(root)
        uid, gid, groups = plan.uid, plan.gid, plan.groups
        if plan.user:       # opens the container's files: only once in its cgroups (devices)
            go_r = _placed(go_r)
            uid, gid, groups, their_env = container_user(plan.user)
            plan.env.update(their_env)
        enter_directory(plan.cwd)
        program = container_program(plan.argv[0], plan.env.get("PATH", ""))
        if plan.confinement is not None:
            from corral.confine import confine
            confine(plan.confinement)
        set_user(uid, gid, groups)
        for sig in _IGNORED_BY_PYTHON:
            signal.signal(sig, signal.SIG_DFL)
        # Set up and confined while the caller moves us into the cgroups: nothing of the
        # container's runs, and none of its files is opened, before we are there.
        go_r = _placed(go_r)
        try:
            os.execve(program, plan.argv, plan.env)
        except OSError as e:
            raise OSError(e.errno, f"cannot run {plan.argv[0]}: {e.strerror}") from None
    except BaseException as e:  # noqa: BLE001 - nothing may return into the caller's code
        number = getattr(e, "errno", None)
        code = {errno.ENOENT: 127, errno.EACCES: 126, errno.ENOEXEC: 126}.get(number, 126)
        message = e.strerror if isinstance(e, OSError) and e.strerror else str(e) or type(e).__name__
        try:
            os.write(report_w, f"{code} {message}".encode())
            if go_r is not None:
                os.read(go_r, 1)    # alive until the caller's cgroup.procs writes are done: they name us
        except OSError:
            pass
    os._exit(127)


def _placed(go_r: int | None) -> None:
    """Wait until the caller has written us into the container's cgroups (go_r None: we were
    cloned into them); exit if it could not."""
    if go_r is not None and os.read(go_r, 1) != b"g":
        os._exit(1)
    return None
