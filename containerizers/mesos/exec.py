"""Exec: another command run inside a running Mesos container (`corral exec`, and the agent's
nested sessions through it), the caller's side.

The container's init starts the command as its own child (execserver.py): the caller connects
to the container's exec socket, sends the command with its stdin, stdout and stderr, and waits
for its exit status; its signals go the same way. Where init does not serve execs (a seccomp
filter that forbids what it serves with; a container of an older corral), exec.json says what
the task got and the caller joins the container from outside (nsenter.py).

A cold `corral exec` imports this module and what it needs alone (corral/cli/exec.py), no
containerizer: its imports are kept to what the exec itself uses (_socket, not socket, whose
import is enum's).
"""

from __future__ import annotations

import os
import sys
import _signal as signal     # signal's C core: the signal module imports enum, milliseconds of a cold exec
import _socket

from corral.files import encode_json, read_json, short_socket_path
from corral.types import CorralError, ExecConfig, ExecFailed, NotRunning

from ..execution import Execution, exit_code
from ..state import EXEC_RECORD, EXEC_SOCKET, ContainerFiles

_REPLY_MAX = 64 << 10


def start(files: ContainerFiles, cgroups_root: str, config: ExecConfig, stdio: tuple[int, int, int]) -> Execution:
    """Start the command in the container of `files` (whose cgroups are under `cgroups_root`)
    with `stdio` as its stdin (with config.interactive), stdout and stderr, or a terminal of its
    own (config.tty); ExecFailed if it cannot start (SyncMesosContainerizer._exec, and a cold
    `corral exec`)."""
    session = read_json(files.path(EXEC_RECORD), default=None)
    if session is not None:
        from .nsenter import start as join
        return join(files, cgroups_root, config, stdio, session)
    return _through_init(files, config, stdio)


class CommandExecution(Execution):
    """A command a Mesos container runs for an exec; with a terminal, its master is the caller's
    to relay."""

    def __init__(self, master: int | None, stdout: int):
        self.to_process = master
        self.outputs = [(master, stdout)] if master is not None else []

    def resize(self, rows: int, cols: int) -> None:
        if self.to_process is not None:
            from corral.terminal import set_window_size
            set_window_size(self.to_process, rows, cols)

    def close(self) -> None:
        if self.to_process is not None:
            os.close(self.to_process)
            self.to_process, self.outputs = None, []


class InitExecution(CommandExecution):
    """A command that the container's init started: its connection carries the command's
    signals there and its exit status back."""

    def __init__(self, sock: _socket.socket, master: int | None, stdout: int):
        super().__init__(master, stdout)
        self.sock = sock
        self._code: int | None = None

    def signal(self, sig: int) -> None:
        """To the command's process group (it leads a session of its own), as a terminal signals
        a foreground job: a shell's children end with it instead of living on in the container."""
        if self._code is None:
            try:
                self.sock.sendmsg([b"signal %d" % sig], [], _socket.MSG_NOSIGNAL)
            except OSError:
                pass        # init is gone: so is the command

    def wait(self) -> int:
        while self._code is None:
            reply = self.sock.recv(_REPLY_MAX)
            if reply.startswith(b"exit "):
                self._code = exit_code(int(reply[5:]))
            elif not reply:
                # init is gone without a word: the container has ended, and the end of its pid
                # namespace killed every process in it (as its cgroups' kill does without one).
                self._code = 128 + signal.SIGKILL
        return self._code

    def close(self) -> None:
        self.sock.close()
        super().close()


def command_stdio(config: ExecConfig, stdio: tuple[int, int, int]):
    """(the command's stdin, stdout and stderr, the terminal's master, the fds to close once the
    command has its copies): with tty, a new terminal's slave for all three; else `stdio`, with
    /dev/null for stdin unless the exec is interactive."""
    if config.tty:
        from corral.terminal import set_window_size
        master, slave = os.openpty()
        set_window_size(slave, *(config.size or (24, 80)))
        return (slave, slave, slave), master, (slave,)
    if not config.interactive:
        devnull = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        return (devnull, *stdio[1:]), None, (devnull,)
    return stdio, None, ()


def _through_init(files: ContainerFiles, config: ExecConfig, stdio: tuple[int, int, int]) -> InitExecution:
    container_id = files.container_id
    if files.termination() is not None:
        raise NotRunning(container_id, "has ended")
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC)
    master, handed = None, ()
    caller_stdout = stdio[1]
    try:
        try:
            with short_socket_path(files.path(EXEC_SOCKET)) as path:
                sock.connect(path)
        except FileNotFoundError:
            raise _not_serving(files) from None
        except ConnectionRefusedError:      # init has gone, and its socket with it
            raise NotRunning(container_id, "has ended") from None
        stdio, master, handed = command_stdio(config, stdio)
        request = encode_json({"argv": config.argv, "env": config.env, "user": config.user,
                               "workdir": config.workdir, "tty": bool(config.tty)})
        fds = b"".join(fd.to_bytes(4, sys.byteorder) for fd in stdio)
        try:
            sock.sendmsg([request], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)], _socket.MSG_NOSIGNAL)
            reply = sock.recv(_REPLY_MAX)
        except (BrokenPipeError, ConnectionResetError):
            reply = b""
        if reply.startswith(b"error "):
            code, _, message = reply[6:].decode(errors="replace").partition(" ")
            raise ExecFailed(message, int(code))
        if reply != b"started":
            raise NotRunning(container_id, "has ended")     # init went (or never served): the container ended
        execution, master = InitExecution(sock, master, caller_stdout), None
        return execution
    except BaseException:
        sock.close()
        raise
    finally:
        for fd in (*handed, *((master,) if master is not None else ())):
            os.close(fd)


def _not_serving(files: ContainerFiles) -> CorralError:
    """Why nothing answers at the exec socket of a container that has not ended."""
    init = files.pids().get("init")
    if not init or files.status() is not None:
        return NotRunning(files.container_id, "has no running init" if files.status() is None else "has ended")
    return CorralError(f"container {files.container_id} was launched by an older corral, whose init serves "
                       f"no execs and which left no {EXEC_RECORD}: nothing says what an exec into it gets")
