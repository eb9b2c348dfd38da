"""The I/O switchboard: the supervisor holding a container's stdin, stdout and stderr, for
containers that ask for it (ContainerConfig.stdin, .tty, .log_max_size), as Mesos's io
switchboard does; a plain container's task writes its sandbox files directly, and none of this runs.

    task ──pipes or a pty──▶ supervisor ──▶ sandbox's stdout, stderr (rotated under a cap: containerizers/logs.py)
                                   │
                                   └──unix socket (<runtime dir>/io.sock, root's alone)──▶ attached clients

With a tty the task's stdin, stdout and stderr are one pseudo-terminal, the controlling
terminal of the task's own session (its output is all stdout, as Docker's and Mesos's). Without,
stdout and stderr are pipes, and stdin a pipe when the container asked for it (else /dev/null).

Clients (Attachment, below: the CLI's attach and the agent's ATTACH_CONTAINER_* calls) speak
frames: a byte of kind, four of length (network order), the data.

    client -> supervisor    STDIN data (empty: the end of stdin; with a tty, ignored: send ^D), WINSIZE rows cols,
                            NO_OUTPUT (an input-only client: it is sent nothing)
    supervisor -> client    STDOUT data, STDERR data; the connection closes once the task's output has ended

Every client gets all output from when it connects. The output is read only as fast as the
slowest client takes it (as a pipe, or docker attach): a client that stops reading holds the task
back (the agent cuts its own clients off after their deadlines). A container started for a
foreground run (`wait_for_client`) has no output read before its first client connects, so that
client misses none. What a client sends past a malformed frame is dropped with the client.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import socket
import struct
import termios
import time

from corral.files import drain, short_socket_path
from corral.record import Record

from .. import execution

SOCKET = "io.sock"                 # in the container's runtime dir
STDIN, STDOUT, STDERR, WINSIZE, NO_OUTPUT = 0, 1, 2, 3, 4
_HEADER = struct.Struct("!BI")
_WINSIZE = struct.Struct("!HH")
MAX_FRAME = 1 << 20                # a larger frame is a broken client
READ_SIZE = 1 << 16
HIGH_WATER = 1 << 20               # output a client may have pending before the task's output waits for it
STDIN_HIGH_WATER = 1 << 20         # stdin pending before clients' input waits for the task
END_GRACE = 5.0                    # seconds the clients get to take the last output once the task has ended
DEFAULT_WINDOW = (24, 80)          # rows, columns until a client says its own


class IOSpec(Record):
    """What the supervisor holds for one container."""
    socket_path: str
    stdin: bool = False
    tty: bool = False
    window: tuple = DEFAULT_WINDOW      # rows, columns of the tty at first
    wait_for_client: bool = False
    log_max_size: int | None = None
    log_max_files: int | None = None


def frame(kind: int, data: bytes = b"") -> bytes:
    return _HEADER.pack(kind, len(data)) + data


def winsize_frame(rows: int, columns: int) -> bytes:
    return frame(WINSIZE, _WINSIZE.pack(rows, columns))


class FrameError(ValueError):
    pass


class Frames:
    """Frames out of a byte stream: feed() what arrives, then take each (kind, data) ready."""

    def __init__(self):
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self.buffer += data
        frames = []
        while len(self.buffer) >= _HEADER.size:
            kind, size = _HEADER.unpack_from(self.buffer)
            if kind > NO_OUTPUT or size > MAX_FRAME:
                raise FrameError(f"bad frame: kind {kind}, {size} bytes")
            if len(self.buffer) < _HEADER.size + size:
                break
            frames.append((kind, bytes(self.buffer[_HEADER.size:_HEADER.size + size])))
            del self.buffer[:_HEADER.size + size]
        return frames


def set_window(fd: int, rows: int, columns: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


# -- the supervisor's side ---------------------------------------------------------------------

class _Client:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.frames = Frames()
        self.pending = bytearray()
        self.output = True


class Switchboard:
    """Made in the supervisor before init is forked: task_fds() are what the task gets as its
    stdin, stdout and stderr; init closes own_fds(); serve() runs the supervisor until init ends."""

    def __init__(self, io: IOSpec, sandbox: str, owner: tuple[int, int] | None = None):
        from ..logs import RotatingFile
        self.io = io
        self.sinks = {stream: RotatingFile(sandbox, name, io.log_max_size, io.log_max_files)
                      for stream, name in ((STDOUT, "stdout"), (STDERR, "stderr"))}
        self.sources: dict[int, int] = {}       # fd we read -> the stream it is
        self.stdin_fd: int | None = None         # where clients' stdin goes
        if io.tty:
            master, slave = os.openpty()
            set_window(master, *io.window)
            if owner is not None:
                os.fchown(slave, *owner)        # the task may reopen its terminal (/dev/tty) as itself
            self.sources[master] = STDOUT
            self.stdin_fd = master
            self._task_fds = (slave, slave, slave)
        else:
            if io.stdin:
                task_in, self.stdin_fd = os.pipe()
            else:
                task_in = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            self.sources.update({out_r: STDOUT, err_r: STDERR})
            self._task_fds = (task_in, out_w, err_w)
        for fd in self.sources:
            os.set_blocking(fd, False)
        if self.stdin_fd is not None and not io.tty:
            os.set_blocking(self.stdin_fd, False)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old = os.umask(0o177)
        try:
            with short_socket_path(io.socket_path) as path:
                self.listener.bind(path)            # in the runtime dir (0700): root's alone anyway
        finally:
            os.umask(old)
        self.listener.listen(16)
        self.listener.setblocking(False)
        self.clients: list[_Client] = []
        self.stdin_pending = bytearray()
        self.stdin_closing = False
        self.connected = not io.wait_for_client

    def task_fds(self) -> tuple[int, int, int]:
        return self._task_fds

    def own_fds(self) -> set[int]:
        """The supervisor's ends: init must close them (a stdin write end held there would keep
        the task from ever reading its end)."""
        fds = set(self.sources) | {self.listener.fileno()} | {s.fd for s in self.sinks.values()}
        return fds | ({self.stdin_fd} if self.stdin_fd is not None else set())

    def forked(self) -> None:
        """init has the task's ends (its 0, 1 and 2): the supervisor's copies go."""
        null = os.open("/dev/null", os.O_RDWR)
        for target in (0, 1, 2):
            os.dup2(null, target)
        os.close(null)

    # -- the loop --------------------------------------------------------------------------

    def serve(self, init: int) -> None:
        """Relay until init has ended; then pass on what the task left and let the clients take it."""
        pidfd = os.pidfd_open(init)
        try:
            while True:
                poller = select.poll()
                poller.register(pidfd, select.POLLIN)
                self._register(poller)
                ready = dict(poller.poll())
                if pidfd in ready:
                    break
                self._handle(ready)
        finally:
            os.close(pidfd)
        deadline = time.monotonic() + END_GRACE
        self._drain(deadline)
        self._finish(deadline)

    def _register(self, poller) -> None:
        poller.register(self.listener, select.POLLIN)
        behind = any(len(c.pending) >= HIGH_WATER for c in self.clients)
        if self.connected and not behind:
            for fd in self.sources:
                poller.register(fd, select.POLLIN)
        taking_input = len(self.stdin_pending) < STDIN_HIGH_WATER
        for client in self.clients:
            events = (select.POLLIN if taking_input else 0) | (select.POLLOUT if client.pending else 0)
            poller.register(client.sock, events)
        if self.stdin_pending and self.stdin_fd is not None:
            poller.register(self.stdin_fd, select.POLLOUT)

    def _handle(self, ready: dict[int, int]) -> None:
        if self.listener.fileno() in ready:
            self._accept()
        for fd in [fd for fd in self.sources if fd in ready]:
            self._read_output(fd)
        for client in list(self.clients):
            events = ready.get(client.sock.fileno(), 0)
            if events & select.POLLOUT:
                self._send(client)
            if events & (select.POLLIN | select.POLLHUP | select.POLLERR) and client in self.clients:
                self._receive(client)
        if self.stdin_fd is not None and self.stdin_fd in ready:
            self._write_stdin()

    def _accept(self) -> None:
        try:
            sock, _ = self.listener.accept()
        except OSError:
            return
        sock.setblocking(False)
        self.clients.append(_Client(sock))
        self.connected = True

    def _drop(self, client: _Client) -> None:
        self.clients.remove(client)
        client.sock.close()

    def _read_output(self, fd: int) -> bool:
        """Pass on one read of `fd`; whether there was anything."""
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return False
        except OSError as e:
            if e.errno != errno.EIO:        # EIO: a pty whose other side is closed everywhere
                raise
            data = b""
        stream = self.sources[fd]
        if not data:
            del self.sources[fd]
            os.close(fd)
            if fd == self.stdin_fd:         # a pty's master is both: its input goes nowhere now
                self.stdin_fd = None
                self.stdin_pending.clear()
            return False
        try:
            self.sinks[stream].write(data)
        except OSError:
            pass            # a full disk loses the file's copy, not the clients'
        out = frame(stream, data)
        for client in [c for c in self.clients if c.output]:
            client.pending += out
            self._send(client)
        return True

    def _send(self, client: _Client) -> None:
        try:
            sent = client.sock.send(client.pending)
        except BlockingIOError:
            return
        except OSError:
            self._drop(client)
            return
        del client.pending[:sent]

    def _receive(self, client: _Client) -> None:
        try:
            data = client.sock.recv(READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(client)
            return
        try:
            frames = client.frames.feed(data)
        except FrameError:
            self._drop(client)
            return
        for kind, payload in frames:
            if kind == STDIN:
                self._stdin(payload)
            elif kind == NO_OUTPUT:
                client.output = False
                client.pending.clear()
            elif kind == WINSIZE and self.io.tty and len(payload) == _WINSIZE.size and self.stdin_fd is not None:
                rows, columns = _WINSIZE.unpack(payload)
                set_window(self.stdin_fd, rows, columns)    # the kernel sends the task SIGWINCH
            # STDOUT, STDERR from a client, or stdin of a container without: nothing to do

    def _stdin(self, data: bytes) -> None:
        if self.stdin_fd is None or self.stdin_closing:
            return
        if data:
            self.stdin_pending += data
            self._write_stdin()
        elif not self.io.tty:            # the end of stdin (with a tty, the client sends ^D)
            self.stdin_closing = True
            self._write_stdin()

    def _write_stdin(self) -> None:
        try:
            while self.stdin_pending:
                written = os.write(self.stdin_fd, self.stdin_pending)
                del self.stdin_pending[:written]
        except BlockingIOError:
            return
        except OSError:                 # the task closed its stdin, or ended: what is left goes nowhere
            self.stdin_pending.clear()
            if not self.io.tty:
                self.stdin_closing = True
        if self.stdin_closing and not self.io.tty:
            os.close(self.stdin_fd)
            self.stdin_fd = None

    # -- the end ---------------------------------------------------------------------------

    def _drain(self, deadline: float) -> None:
        """What the task wrote before it ended is still in the pipes (or the pty): pass it on.
        Not waiting for their end: a process the task left outside a pid namespace may hold them."""
        for fd in list(self.sources):
            while fd in self.sources and self._read_output(fd):
                if any(len(c.pending) >= HIGH_WATER for c in self.clients):
                    self._flush(deadline)

    def _flush(self, deadline: float) -> None:
        while any(c.pending for c in self.clients) and time.monotonic() < deadline:
            poller = select.poll()
            for client in self.clients:
                if client.pending:
                    poller.register(client.sock, select.POLLOUT)
            for fd, _ in poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
                client = next((c for c in self.clients if c.sock.fileno() == fd), None)
                if client is not None:
                    self._send(client)
            # A client that cannot take it all within the grace has had its chance.

    def abandon(self) -> None:
        """Let go of everything at once (the loop failed): the task's writes then fail (EPIPE)
        rather than wait for a reader that is gone."""
        for client in list(self.clients):
            self._drop(client)
        for fd in {*self.sources, self.stdin_fd} - {None}:
            os.close(fd)
        self.sources, self.stdin_fd = {}, None
        self.listener.close()

    def _finish(self, deadline: float) -> None:
        self._flush(deadline)
        for client in list(self.clients):
            self._drop(client)
        self.listener.close()
        try:
            os.unlink(self.io.socket_path)
        except FileNotFoundError:
            pass
        for fd in list(self.sources):
            os.close(fd)
        if self.stdin_fd is not None and self.stdin_fd not in self.sources:
            os.close(self.stdin_fd)
        for sink in self.sinks.values():
            sink.close()


# -- the clients' side -------------------------------------------------------------------------

class Attachment(execution.Attachment):
    """A connection to a container's switchboard. `relay()` drives a whole session for the CLI;
    the agent uses send() and the socket (`sock`) from its own loop."""

    def __init__(self, socket_path: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            with short_socket_path(socket_path) as path:
                self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise

    def close(self) -> None:
        self.sock.close()

    def relay(self, stdin: int | None, outputs: dict[int, int], terminal=None) -> bool:
        """Copy `stdin` (None: none) to the task until its end, and the task's output to
        `outputs` (stream -> fd) until the container's output ends (True) or the caller stops
        taking it (False).
        With `terminal` (corral.terminal.Terminal), its size now and at each change; its detach
        keys typed, Detached is raised (what came before them sent as far as the socket takes
        it now, no end of stdin: the task runs on).

        One poll loop, never blocking on the socket: a caller writing more than the task reads
        while the task writes more than the caller reads would otherwise deadlock the two."""
        self.sock.setblocking(False)
        to_send = bytearray()
        frames = Frames()
        reading = stdin is not None
        watch = terminal.detach_watch() if terminal is not None and reading else None
        size = terminal.size() if terminal is not None else None
        if size:
            to_send += winsize_frame(*size)
        while True:
            resize_fd = terminal.resize_fd if terminal is not None else None
            poller = select.poll()
            poller.register(self.sock, select.POLLIN | (select.POLLOUT if to_send else 0))
            if reading and len(to_send) < STDIN_HIGH_WATER:
                poller.register(stdin, select.POLLIN)
            if resize_fd is not None:
                poller.register(resize_fd, select.POLLIN)
            for fd, events in poller.poll():
                if fd == self.sock.fileno():
                    if events & select.POLLOUT and to_send:
                        try:
                            del to_send[:self.sock.send(to_send)]
                        except BlockingIOError:
                            pass
                        except OSError:
                            to_send.clear()
                            reading = False      # the container's end: its output follows, then EOF
                    if events & (select.POLLIN | select.POLLHUP | select.POLLERR):
                        try:
                            data = self.sock.recv(READ_SIZE)
                        except BlockingIOError:
                            continue
                        except OSError:
                            data = b""
                        if not data:
                            return True
                        for kind, payload in frames.feed(data):
                            target = outputs.get(kind)
                            if target is not None:
                                try:
                                    _write_all(target, payload)
                                except BrokenPipeError:
                                    return False    # the caller stopped reading (`| head`)
                elif fd == stdin:
                    data = os.read(stdin, READ_SIZE)
                    reading = bool(data)
                    if data and watch is not None:
                        data = watch.feed(data)
                        if watch.detached:
                            self._send_now(to_send + (frame(STDIN, data) if data else b""))
                            from corral.terminal import Detached
                            raise Detached()
                        if not data:
                            continue                    # held: maybe the start of the detach keys
                    to_send += frame(STDIN, data)       # empty: the end of stdin
                elif fd == resize_fd and terminal.resize_fd == fd:   # else closed by a signal's handler meanwhile
                    drain(resize_fd)
                    size = terminal.size()
                    if size:
                        to_send += winsize_frame(*size)

    def _send_now(self, data: bytes) -> None:
        """What the socket takes at once (the last input before a detach): never waits."""
        try:
            self.sock.send(data)
        except OSError:
            pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]

