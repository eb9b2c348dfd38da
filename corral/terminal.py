"""The caller's side of a terminal session (`corral exec -t`, `corral run -t`, attach).

    with Terminal() as terminal:                # the caller's tty in raw mode, if it is one
        rows, cols = terminal.size() or (24, 80)
        ... start the process on a pty of that size ...
        relay(0, master, [(master, 1)], terminal=terminal,
              on_resize=lambda rows, cols: set_size(master, rows, cols))

`Terminal` puts the caller's tty in raw mode (keys such as Ctrl-C and Ctrl-Z go through as
bytes, so that the far side's terminal turns them into signals, as it does for a local
program) and restores its settings on every way out: the end of the `with`, an exception, and
SIGTERM, SIGHUP or SIGQUIT (restored, then the signal is delivered again to whatever handled
it before). After a stop and SIGCONT it is raw again. Window-size changes (SIGWINCH) reach
`relay` through a pipe, so that its `on_resize` runs in the loop, between two writes, never in
the middle of one.

`relay` copies the caller's stdin to the process and the process's outputs to the caller
until every output has ended. It works as well when the caller's stdin is no tty (a pipe, a
file, /dev/null) or when there is no terminal at all.

Detach keys (Docker's `--detach-keys`, ctrl-p,ctrl-q by default): a Terminal given keys watches
what is typed on it while it is raw (a session with a tty that takes our keys); once they are
typed, every relay of the session (this one, the Mesos switchboard's and dockerd's attachments,
the agent's input stream) stops and raises Detached, leaving the far side's process running
and its input open. A partial sequence is held back until the next key says whether it
completes: if not, it goes on with that key, as typed.

Only the standard library's cheapest modules: the CLI imports this on its cold path.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import _signal as signal     # signal's C core: the signal module imports enum, milliseconds of a cold exec
import struct
import termios
import tty

from .files import drain
from .types import CorralError, InvalidInput

CHUNK = 65536
DEFAULT_DETACH_KEYS = b"\x10\x11"      # ctrl-p, ctrl-q, as Docker's
# ctrl-<c> is the code of c's place here (ctrl-@ 0, ctrl-a 1, ... ctrl-_ 31): what a terminal sends.
_CTRL = "@abcdefghijklmnopqrstuvwxyz[\\]^_"
# Signals that end the caller without unwinding Python: the terminal is restored before they do.
_ENDING = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def parse_detach_keys(spec: str | None) -> bytes:
    """Docker's --detach-keys: keys separated by commas, each a single ASCII character or
    ctrl-<c>, c one of a-z @ [ \\ ] ^ _ (or DEL), as moby's term.ToBytes reads them. None or
    empty: ctrl-p,ctrl-q. InvalidInput for anything else."""
    if not spec:
        return DEFAULT_DETACH_KEYS
    keys = bytearray()
    for key in spec.split(","):
        if len(key) == 1 and key.isascii():
            keys.append(ord(key))
        elif len(key) == 6 and key.startswith("ctrl-") and key[5] in _CTRL:
            keys.append(_CTRL.index(key[5]))
        elif key == "DEL":
            keys.append(0x7f)
        else:
            raise InvalidInput(f"no such key {key!r}: give characters or ctrl-<a-z, @, [, \\, ], ^, _>, "
                               "comma separated (default ctrl-p,ctrl-q)")
    return bytes(keys)


class Detached(CorralError):
    """The detach keys were typed: the session is left, its process runs on (its input open).
    The message is what `docker attach` and `docker exec` print when they detach."""

    def __init__(self):
        super().__init__("read escape sequence")


class DetachWatch:
    """The detach keys, watched for in what is typed (moby's escape proxy): feed() each read,
    and pass on what it returns. A tail that may begin the keys is held back until the next
    read says whether they complete (keys split across reads are seen); if not, it goes on with
    that read. `detached` once they are complete: what came before them is returned, what
    followed them (and anything fed later) is dropped, as Docker's."""

    def __init__(self, keys: bytes):
        self.keys = keys
        self.held = b""
        self.detached = False

    def feed(self, data: bytes) -> bytes:
        if self.detached:
            return b""
        data, self.held = self.held + data, b""
        at = data.find(self.keys)
        if at >= 0:
            self.detached = True
            return data[:at]
        # The longest tail of data that begins the keys (a shorter one is a part of it).
        for length in range(min(len(self.keys) - 1, len(data)), 0, -1):
            if data.endswith(self.keys[:length]):
                self.held = data[-length:]
                return data[:-length]
        return data


def window_size(fd: int) -> tuple[int, int] | None:
    """(rows, columns) of the terminal open as `fd`; None when it is no terminal."""
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, bytes(8)))
    except OSError:
        return None
    return rows, cols


def set_window_size(fd: int, rows: int, cols: int) -> None:
    """Give the terminal open as `fd` (a pty's master or slave) a size: the kernel sends
    SIGWINCH to its foreground process group when it changes."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class Terminal:
    """The caller's terminal (`fd`, stdin by default) for one session; a context manager.

    On a tty: raw mode while inside, the settings restored however the `with` is left, and
    SIGWINCH turned into a readable `resize_fd`. On anything else it changes nothing, and
    size() is None. Signal handlers are only installed from the main thread (Python's rule)."""

    def __init__(self, fd: int = 0, raw: bool = True, detach_keys: bytes | None = None):
        """`raw`: False leaves the settings alone (a session that sends no input: keys stay
        the caller's own), the window size is still followed. `detach_keys`: typed while the
        terminal is raw, they end the session's relay (detach_watch())."""
        self.fd = fd
        self.raw = raw
        self.detach_keys = detach_keys
        self.is_tty = os.isatty(fd)
        self.resize_fd: int | None = None
        self._saved: list | None = None
        self._handlers: dict[int, object] = {}
        self._resize_w: int | None = None

    def size(self) -> tuple[int, int] | None:
        return window_size(self.fd) if self.is_tty else None

    def detach_watch(self) -> DetachWatch | None:
        """A watch for the detach keys over a session's input typed here: None without keys or
        unless raw (as Docker watches only a tty session's stdin: piped input is never cut short)."""
        return DetachWatch(self.detach_keys) if self.detach_keys and self._saved is not None else None

    def __enter__(self) -> "Terminal":
        if not self.is_tty:
            return self
        self._saved = termios.tcgetattr(self.fd) if self.raw else None
        try:
            self.resize_fd, self._resize_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            self._install(signal.SIGWINCH, self._on_winch)
            self._install(signal.SIGCONT, self._on_cont)
            for sig in _ENDING:
                self._install(sig, self._on_ending)
            if self.raw:
                tty.setraw(self.fd, termios.TCSANOW)
        except BaseException:
            self.restore()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.restore()

    def restore(self) -> None:
        """Put the terminal's settings and the signal handlers back as they were (idempotent)."""
        if self._saved is not None:
            try:
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            except termios.error:
                pass        # the terminal went away (hung up): nothing to restore
            self._saved = None
        for sig, handler in self._handlers.items():
            signal.signal(sig, handler)
        self._handlers = {}
        for fd in (self.resize_fd, self._resize_w):
            if fd is not None:
                os.close(fd)
        self.resize_fd = self._resize_w = None

    def _install(self, sig: int, handler) -> None:
        try:
            self._handlers[sig] = signal.signal(sig, handler)
        except ValueError:
            pass            # not the main thread: no handlers (raw mode is still undone by __exit__)

    def _on_winch(self, _signum, _frame) -> None:
        try:
            os.write(self._resize_w, b"w")
        except (BlockingIOError, TypeError):
            pass            # a change is already pending (or the pipe is closed): one read covers all

    def _on_cont(self, signum, frame) -> None:
        if self._saved is not None:
            try:
                tty.setraw(self.fd, termios.TCSANOW)    # a shell resets its tty when a job stops
            except termios.error:
                pass
        previous = self._handlers.get(signum)
        if callable(previous):
            previous(signum, frame)

    def _on_ending(self, signum, _frame) -> None:
        self.restore()
        os.kill(os.getpid(), signum)     # again, to the handler (or default action) from before


def hold(master: int) -> None:
    """Keep the pty master `master` open after the caller has gone (a detach from a terminal the
    caller made, as `corral exec -t` makes the command's), in a process of its own that reads
    and drops the output until the far side has closed the terminal everywhere: the last close
    of a master hangs up its terminal (SIGHUP, then end of file), and Docker's daemon, which
    holds its execs' terminals, leaves a detached command running."""
    child = os.fork()
    if child:
        os.waitpid(child, 0)
        return
    try:
        os.setsid()                         # out of the caller's session and its terminal's hangup
        if os.fork() == 0:                  # reparented: the caller waits for no one
            for sig in (signal.SIGINT, signal.SIGWINCH, signal.SIGCONT, *_ENDING):
                signal.signal(sig, signal.SIG_DFL)      # not the caller's handlers (its terminal's restore)
            os.closerange(0, master)
            os.closerange(master + 1, os.sysconf("SC_OPEN_MAX"))
            os.set_blocking(master, True)
            while os.read(master, CHUNK):
                pass
    except BaseException:       # noqa: BLE001 - EIO: the terminal closed everywhere; the end either way
        pass
    finally:
        os._exit(0)


def relay(stdin: int | None, to_process: int | None, outputs: list[tuple[int, int]], *,
          terminal: Terminal | None = None, on_resize=None, on_input_end=None) -> None:
    """Copy `stdin` to `to_process`, and each (from_process, to_caller) pair of `outputs` (to_caller:
    an fd, or a callable that takes the bytes),
    until every from_process has reached its end (EOF; EIO, as a pty's master reads once its
    slave is closed everywhere) or its to_caller is closed. Returns then; closes nothing but
    what on_input_end does.

    The process's side (`to_process`, the from_process fds) is made non-blocking, so that a
    process that does not read its input never stops its output; the caller's side keeps its
    flags (they are shared with the caller's shell). On EOF of `stdin`, `on_input_end()` is
    called (default: close `to_process`, unless it is also an output, as a pty's master or a
    socket is). With `terminal` and `on_resize`, `on_resize(rows, cols)` runs on each window
    change of the terminal.

    Detached is raised when `terminal`'s detach keys are typed (Terminal.detach_watch): what was
    typed before them is written as far as the process takes it now, and nothing is closed."""
    for fd in {to_process, *(source for source, _ in outputs)} - {None}:
        os.set_blocking(fd, False)
    sources = dict(outputs)
    pending = b""                                   # read from stdin, not yet written to the process
    reading = stdin is not None and to_process is not None
    watch = terminal.detach_watch() if terminal is not None and reading else None
    poller = select.poll()
    registered: set[int] = set()
    while sources:
        # Asked each round: a signal's handler may have restored the terminal meanwhile.
        resize_fd = terminal.resize_fd if terminal is not None and on_resize is not None else None
        wanted: dict[int, int] = {source: select.POLLIN for source in sources}
        if pending:
            wanted[to_process] = wanted.get(to_process, 0) | select.POLLOUT
        elif reading:
            wanted[stdin] = wanted.get(stdin, 0) | select.POLLIN
        if resize_fd is not None:
            wanted[resize_fd] = select.POLLIN
        for fd in registered - wanted.keys():
            poller.unregister(fd)
        for fd, events in wanted.items():
            poller.register(fd, events)             # registers, or changes what is asked
        registered = set(wanted)
        for fd, events in poller.poll():
            if fd == resize_fd:
                drain(resize_fd)
                size = terminal.size()
                if size:
                    on_resize(*size)
                continue
            if fd in sources and events & (select.POLLIN | select.POLLHUP | select.POLLERR):
                if not _copy_out(fd, sources[fd]):
                    del sources[fd]
            if fd == to_process and pending and events & (select.POLLOUT | select.POLLERR | select.POLLHUP):
                pending, reading = _write_some(to_process, pending, reading)
            if fd == stdin and reading and events & (select.POLLIN | select.POLLHUP | select.POLLERR):
                data = os.read(stdin, CHUNK)
                if not data:
                    reading = False
                    _input_ended(to_process, sources, on_input_end)
                elif watch is None:
                    pending = data
                else:
                    pending = watch.feed(data)
                    if watch.detached:
                        _write_some(to_process, pending, reading)
                        raise Detached()


def _copy_out(source: int, target: int) -> bool:
    """One read of the process's output, written whole to the caller; whether this output goes on."""
    try:
        data = os.read(source, CHUNK)
    except BlockingIOError:
        return True
    except OSError as e:
        if e.errno == errno.EIO:        # a pty's master once its slave is closed: the end
            return False
        raise
    if not data:
        return False
    try:
        target(data) if callable(target) else _write_all(target, data)
    except BrokenPipeError:
        return False                    # the caller stopped reading (`| head`): the output ends here
    return True


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _write_some(fd: int, pending: bytes, reading: bool) -> tuple[bytes, bool]:
    """Write what the process takes now; a process that closed its input takes nothing more."""
    try:
        return pending[os.write(fd, pending):], reading
    except BlockingIOError:
        return pending, reading
    except OSError as e:
        if e.errno in (errno.EPIPE, errno.EIO):
            return b"", False
        raise


def _input_ended(to_process: int, sources: dict, on_input_end) -> None:
    if on_input_end is not None:
        on_input_end()
    elif to_process not in sources:
        os.close(to_process)
