"""Execs served by a container's init: a command run in the running container as init's child
(`corral exec`, the agent's nested sessions), init's side.

    client ──connect <runtime dir>/exec.sock, one request with the command's stdio fds──▶ init
                                                                                        │ fork
                                                                                        ▼
                                                                                     command

A child of init is where an exec must be, by construction: in every namespace, cgroup and the
root of the container, under the task's confinement (init confined itself as the task is:
capabilities, no_new_privs, seccomp filter, rlimits), with nothing to join, move or apply, and
none of the host's files reachable that the task cannot reach. exec.py is the client's side.

The socket (SOCK_SEQPACKET: one message per datagram) is bound by the launcher in the
container's runtime dir (0700) before it forks the supervisor, and init inherits it: it exists once the
launch has returned. init serves it once the task runs, so an exec never precedes the task's
placement in the container's cgroups (earlier connections wait in the backlog). A container
whose seccomp filter forbids the calls init serves with has none (LaunchSpec.exec_socket, from
isolators/seccomp.py's serving_allowed): an exec then joins it from outside (nsenter.py).

    client → init   the request: JSON {"argv": [...], "env": {...}, "user": U or null,
                    "workdir": D or null, "tty": bool}, with the command's stdin, stdout and
                    stderr as SCM_RIGHTS (with tty, the one terminal for all three)
                    "signal N": to the command's process group (it leads a session of its own)
    init → client   "started", or "error CODE MESSAGE" (CODE 126 or 127, as a shell's)
                    "exit STATUS": its raw wait status, once init has reaped it
A client that goes away leaves its command running, as the end of a process that ran a command
in a container always has; the container's end ends every exec (its pid namespace ends with
init, its cgroups are killed).

init serves in one poll loop that nothing blocks: a command's set-up that reads the container's
files (its user, looked up in /etc/passwd, which the container may have made a FIFO) runs in
the forked child, which reports over a pipe the loop polls. Everything here is imported before
init leaves the host's filesystem.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import _signal as signal     # signal's C core: what init needs of it, without enum's import
import sys
import _socket

from corral.files import decode_json, drain, find_program, read_small, short_socket_path
from corral.users import resolve_user, user_env

REQUEST_MAX = 256 << 10             # bytes of one request: a larger one is refused
_FDS = 3                            # stdin, stdout, stderr
_INT = 4                            # bytes of an fd in SCM_RIGHTS
_NOT_WAITING = _socket.MSG_NOSIGNAL | _socket.MSG_DONTWAIT     # a gone client is an error, not a SIGPIPE
_CODES = {errno.ENOENT: 127, errno.EACCES: 126, errno.ENOEXEC: 126}     # as a shell's, by errno
if os.uname().machine in ("x86_64", "aarch64"):
    _TIOCSCTTY = 0x540E             # asm-generic's: termios (a shared library, ~0.4 ms of a cold run) not loaded
else:
    from termios import TIOCSCTTY as _TIOCSCTTY


def listen(path: str) -> _socket.socket:
    """The exec socket at `path` (a file left there from an earlier container is replaced),
    listening, for init to inherit and serve."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC | _socket.SOCK_NONBLOCK)
    try:
        with short_socket_path(path) as short:
            try:
                os.unlink(short)
            except FileNotFoundError:
                pass
            old = os.umask(0o177)
            try:
                sock.bind(short)
            finally:
                os.umask(old)
        sock.listen(64)
    except BaseException:
        sock.close()
        raise
    return sock


class _Session:
    """One client's connection and its command."""
    __slots__ = ("conn", "pid", "start_r", "pending")

    def __init__(self, conn: _socket.socket):
        self.conn: _socket.socket | None = conn
        self.pid: int | None = None             # the command, once forked
        self.start_r: int | None = None         # the forked child's report, until it has exec'd
        self.pending: list[int] = []            # signals that came before it had started

    def reply(self, message: bytes) -> None:
        if self.conn is not None:
            try:
                self.conn.sendmsg([message], [], _NOT_WAITING)
            except OSError:
                pass        # the client is gone (or stalled, with three replies in its buffer)


class Server:
    """init's loop: made before the task runs, while the launcher places init in the container's
    cgroups (what it sets up is copied from the launcher's pages then, not after the task has
    started), served once it runs (serve(task)). `spec`: the task's LaunchSpec, whose env, cwd
    and user an exec gets; `forwarded`: the signals init handles, which a command gets as
    default; `task_ended(status)` records the task's end and never returns."""

    def __init__(self, listener: _socket.socket, spec, forwarded: frozenset, task_ended):
        self.listener, self.spec, self.task_ended = listener, spec, task_ended
        self.task: int | None = None
        self.defaults = forwarded | {signal.SIGCHLD}
        self.by_fd: dict[int, _Session] = {}        # a connection's or a start pipe's fd
        self.by_pid: dict[int, _Session] = {}
        self.poller = select.poll()
        self.wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # Every handled signal writes to the wake pipe, and SIGCHLD is handled (a default one is
        # dropped): a child's end wakes the poll, with no race between the reap and the poll.
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)     # full after a flood: no warning on the task's stderr
        signal.signal(signal.SIGCHLD, _ignore)
        self.poller.register(self.wake_r, select.POLLIN)
        self.poller.register(listener.fileno(), select.POLLIN)

    def serve(self, task: int) -> None:
        self.task = task
        wake_r = self.wake_r
        while True:
            self._reap()
            for fd, _ in self.poller.poll():
                if fd == wake_r:
                    drain(wake_r)
                elif fd == self.listener.fileno():
                    self._accept()
                elif fd in self.by_fd:
                    session = self.by_fd[fd]
                    if fd == session.start_r:
                        self._started(session)
                    else:
                        self._message(session)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.task:
                self.task_ended(status)
            session = self.by_pid.pop(pid, None)
            if session is not None:
                if session.start_r is not None:
                    self._started(session)          # its report, before its end
                session.reply(b"exit %d" % status)
                self._close_connection(session)

    def _accept(self) -> None:
        try:
            fd, _ = self.listener._accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        conn = _socket.socket(fileno=fd)
        conn.setblocking(False)
        self.by_fd[fd] = _Session(conn)
        self.poller.register(fd, select.POLLIN)

    def _message(self, session: _Session) -> None:
        try:
            data, ancillary, flags, _ = session.conn.recvmsg(REQUEST_MAX, _socket.CMSG_SPACE(_FDS * _INT),
                                                             _socket.MSG_CMSG_CLOEXEC)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, ancillary, flags = b"", [], 0
        fds = _received_fds(ancillary)
        try:
            if not data:                            # the client is gone: its command is left running
                self._close_connection(session)
            elif session.pid is None:
                self._start(session, data, fds, flags)
            elif data.startswith(b"signal "):
                self._signal(session, int(data[7:]))
        except Exception as e:  # noqa: BLE001 - a bad request ends its connection, never init
            session.reply(_failure(e) if isinstance(e, OSError) else b"error 126 a request that is not corral's")
            self._close_connection(session)
        finally:
            for fd in fds:
                os.close(fd)

    def _start(self, session: _Session, data: bytes, fds: list[int], flags: int) -> None:
        if flags & (_socket.MSG_TRUNC | _socket.MSG_CTRUNC):
            raise ValueError("truncated")
        request = decode_json(data)
        argv, env, user, workdir, tty = (request["argv"], request["env"], request["user"], request["workdir"],
                                         request["tty"] is True)
        if (len(fds) != _FDS or not argv or not all(isinstance(a, str) for a in argv) or not isinstance(env, dict)
                or not all(isinstance(v, str) for v in env.values())
                or not all(isinstance(v, (str, type(None))) for v in (user, workdir))):
            raise ValueError("bad request")
        fds[:] = [_above_stdio(fd) for fd in fds]   # dup2'd to 0, 1 and 2: none may be one of them
        spec = self.spec
        env = {**spec.env, **env}
        if user or workdir or tty or spec.uid is not None:
            self._fork(session, argv, env, user, workdir, tty, fds)
            return
        # The plain case as init spawns the task: posix_spawn's vfork copies no page tables.
        # (An OSError, the command not found or not run, is _message's error reply.)
        program = container_program(argv[0], env.get("PATH", ""))
        try:
            pid = os.posix_spawn(program, argv, env, setsid=True, setsigmask=(), setsigdef=self.defaults,
                                 file_actions=[(os.POSIX_SPAWN_DUP2, fd, n) for n, fd in enumerate(fds)])
        except OSError as e:
            raise _exec_failed(e, argv[0]) from None
        self._forked(session, pid)
        self._started(session)

    def _fork(self, session, argv, env, user, workdir, tty, fds) -> None:
        start_r, start_w = (_above_stdio(fd) for fd in os.pipe2(os.O_CLOEXEC))   # the child dup2s over 0-2
        # Born with init's handlers (which would forward a signal to the task): blocked until
        # the child has put the defaults back.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, self.defaults)
        pid = os.fork()
        if pid == 0:
            _become(self, argv, env, user, workdir, tty, fds, start_w)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        os.close(start_w)
        session.start_r = start_r
        self.by_fd[start_r] = session
        self.poller.register(start_r, select.POLLIN)
        self._forked(session, pid)

    def _forked(self, session: _Session, pid: int) -> None:
        session.pid = pid
        self.by_pid[pid] = session

    def _started(self, session: _Session) -> None:
        """The command exec'd, or its child reported why not (a start pipe read at its EOF or report)."""
        if session.start_r is not None:
            try:
                report = os.read(session.start_r, 4096)
            except BlockingIOError:
                return
            self.poller.unregister(session.start_r)
            del self.by_fd[session.start_r]
            os.close(session.start_r)
            session.start_r = None
            if report:
                session.reply(b"error " + report)
                self._close_connection(session)
                return
        session.reply(b"started")
        for signum in session.pending:
            self._signal(session, signum)
        session.pending = []

    def _signal(self, session: _Session, signum: int) -> None:
        if session.start_r is not None:
            session.pending.append(signum)
        elif session.pid in self.by_pid:        # not yet reaped: its pid is still its own
            try:
                os.killpg(session.pid, signum)
            except (ProcessLookupError, PermissionError):
                pass

    def _close_connection(self, session: _Session) -> None:
        if session.conn is not None:
            fd = session.conn.fileno()
            self.poller.unregister(fd)
            del self.by_fd[fd]
            session.conn.close()
            session.conn = None


def _ignore(*_) -> None:
    """SIGCHLD's handler: handled, so that it wakes the loop through the wake pipe."""


def _become(server: Server, argv, env, user, workdir, tty, fds, start_w: int) -> None:
    """In init's forked child: set the command up and exec it, or report why not; never return."""
    try:
        signal.set_wakeup_fd(-1)
        for sig in server.defaults:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        os.setsid()
        for n, fd in enumerate(fds):
            os.dup2(fd, n)
        if tty:
            take_terminal()
        spec = server.spec
        uid, gid, groups = spec.uid, spec.gid, spec.groups
        if user:        # the container's users: we are in its mount namespace, root and cgroups
            uid, gid, groups, their_env = container_user(user)
            env.update(their_env)
        enter_directory(os.path.join(spec.cwd, workdir) if workdir else spec.cwd)
        program = container_program(argv[0], env.get("PATH", ""))
        set_user(uid, gid, groups)
        try:
            os.execve(program, argv, env)
        except OSError as e:
            raise _exec_failed(e, argv[0]) from None
    except BaseException as e:  # noqa: BLE001 - nothing may return into init's loop
        try:
            os.write(start_w, _failure(e)[len(b"error "):])
        except OSError:
            pass
    os._exit(127)


# -- a command's own steps before its exec: init's exec children (above), a joined exec
# (nsenter.py) and the task (supervisor.py) take them alike

def take_terminal() -> None:
    """Make our stdin, a terminal, our controlling one (we lead a session of our own): ^C and ^Z
    typed on it reach us as signals."""
    fcntl.ioctl(0, _TIOCSCTTY, 0)


def container_user(spec: str) -> tuple[int, int, tuple[int, ...], dict[str, str]]:
    """--user against the container's /etc/passwd and /etc/group (we are in its mount namespace
    and root): uid, gid, groups, and the user's HOME, USER and LOGNAME."""
    passwd = read_small("/etc/passwd")
    uid, gid = resolve_user(spec, passwd, read_small("/etc/group"))
    return uid, gid, (gid,), user_env(passwd, uid)


def enter_directory(cwd: str) -> None:
    try:
        os.chdir(cwd)
    except OSError as e:
        raise OSError(e.errno, f"cannot enter working directory {cwd}: {e.strerror}") from None


def container_program(name: str, path: str) -> str:
    """`name` as execvp would find it on the container's `path`; ENOENT (a shell's 127) if nowhere."""
    program = find_program(name, path)
    if program is None:
        raise OSError(errno.ENOENT, f"{name}: not found in the container's PATH")
    return program


def set_user(uid: int | None, gid: int | None, groups: tuple[int, ...]) -> None:
    """Become `uid`, `gid` with supplementary `groups` (None: stay as we are), groups first."""
    if gid is not None:
        os.setgroups(list(groups))
        os.setgid(gid)
    if uid is not None:
        os.setuid(uid)


def _failure(e: BaseException) -> bytes:
    """A command's failure to start as the error reply: "error CODE MESSAGE"."""
    message = e.strerror if isinstance(e, OSError) and e.strerror else str(e) or type(e).__name__
    return f"error {_CODES.get(getattr(e, 'errno', None), 126)} {message}".encode(errors="replace")


def _exec_failed(e: OSError, name: str) -> OSError:
    return OSError(e.errno, f"cannot run {name}: {e.strerror}")


def _received_fds(ancillary) -> list[int]:
    fds = []
    for level, kind, data in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            usable = len(data) - len(data) % _INT
            fds += [int.from_bytes(data[i:i + _INT], sys.byteorder, signed=True) for i in range(0, usable, _INT)]
    return fds


def _above_stdio(fd: int) -> int:
    """`fd`, moved above 0, 1 and 2 where it is one of them (init closes its own with a switchboard)."""
    if fd > 2:
        return fd
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    os.close(fd)
    return moved
