"""corral/terminal.py: the caller's side of a terminal session, driven through real ptys."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from tests.ptykit import PtySession, is_raw

# The program on the far side: its size, what it reads, and a Ctrl-C, all reported.
FAR = textwrap.dedent("""
    import os, signal, sys
    from corral.terminal import window_size
    def report(*_):
        os.write(1, b"size %d %d\\n" % window_size(0))    # not print(): it may be in one already
    signal.signal(signal.SIGWINCH, report)
    signal.signal(signal.SIGINT, lambda *_: (os.write(1, b"interrupted\\n"), os._exit(130)))
    report()
    for line in sys.stdin:
        print("got", line.strip(), flush=True)
""")

# The caller: corral.terminal between its own tty and a far program on a pty of its own.
NEAR = textwrap.dedent("""
    import os, subprocess, sys, fcntl, termios
    from corral.terminal import Detached, Terminal, relay, set_window_size
    far = sys.argv[1]
    with Terminal(detach_keys=b"\x10\x11" if sys.argv[2] == "detach" else None) as terminal:
        master, slave = os.openpty()
        set_window_size(slave, *terminal.size())
        child = subprocess.Popen([sys.executable, "-c", far], stdin=slave, stdout=slave, stderr=slave,
                                 start_new_session=True, preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        os.close(slave)
        if sys.argv[2] == "raise":
            raise SystemExit("raised")
        try:
            relay(0, master, [(master, 1)], terminal=terminal,
                  on_resize=lambda rows, cols: set_window_size(master, rows, cols))
        except Detached as e:
            running = child.poll() is None
            child.kill()
            child.wait()
            os.close(master)
            raise SystemExit(f"{e}: far running {running}")
        code = child.wait()
    print("far exited", code, flush=True)
""")


@pytest.fixture
def session():
    sessions = []

    def start(how: str = "relay") -> PtySession:
        s = PtySession([sys.executable, "-c", NEAR, FAR, how], rows=30, cols=90)
        sessions.append(s)
        return s
    yield start
    for s in sessions:
        s.close()


def test_keys_window_size_and_ctrl_c_reach_the_far_side(session):
    s = session()
    s.expect(b"size 30 90")
    assert is_raw(s.settings())
    s.write(b"hello\r")
    s.expect(b"got hello")
    s.resize(40, 100)
    s.expect(b"size 40 100")
    s.write(b"\x03")                  # a byte to the near side (raw), SIGINT on the far side's tty
    s.expect(b"interrupted")
    assert s.wait() == 0
    s.expect(b"far exited 130")
    assert s.settings() == s.before


def test_settings_come_back_after_an_exception(session):
    s = session("raise")
    assert s.wait() == 1
    s.expect(b"raised")
    assert s.settings() == s.before


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_settings_come_back_when_a_signal_ends_the_caller(session, sig):
    s = session()
    s.expect(b"size 30 90")
    assert is_raw(s.settings())
    s.process.send_signal(sig)
    assert s.wait() == -sig           # the signal still ends it, as it would have
    assert s.settings() == s.before


def test_a_pipe_for_stdin_copies_everything_both_ways_and_ends_on_eof():
    # 4 MB through `cat`, more than any pipe holds: neither direction may wait for the other.
    script = textwrap.dedent("""
        import subprocess, sys
        from corral.terminal import Terminal, relay
        with Terminal() as terminal:
            cat = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            relay(0, cat.stdin.fileno(), [(cat.stdout.fileno(), 1)], terminal=terminal,
                  on_input_end=cat.stdin.close)
            assert terminal.size() is None
            sys.exit(cat.wait())
    """)
    data = os.urandom(4 << 20)
    result = subprocess.run([sys.executable, "-c", script], input=data, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == data


def test_no_stdin_at_all():
    script = textwrap.dedent("""
        import subprocess
        from corral.terminal import relay
        p = subprocess.Popen(["echo", "alone"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        relay(None, None, [(p.stdout.fileno(), 1), (p.stderr.fileno(), 2)])
        p.wait()
    """)
    result = subprocess.run([sys.executable, "-c", script], stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    assert result.stdout == b"alone\n" and result.returncode == 0


def test_the_detach_keys_leave_the_relay_and_the_far_program_running(session):
    s = session("detach")
    s.expect(b"size 30 90")
    s.write(b"\x10")
    s.write(b"a\r")                                 # not the keys: both bytes go on, as typed
    s.expect(b"got \x10a")
    s.write(b"\x10")
    s.write(b"\x11")                                # the keys, across two reads
    assert s.wait() == 1
    s.expect(b"read escape sequence: far running True")
    assert s.settings() == s.before


def test_detach_watch_holds_back_what_may_begin_the_keys():
    from corral.terminal import DetachWatch

    def typed(keys: bytes, *reads: bytes) -> tuple[bytes, bool]:
        watch = DetachWatch(keys)
        passed = b"".join(watch.feed(read) for read in reads)
        return passed, watch.detached
    ctrl_p, ctrl_q = b"\x10", b"\x11"
    assert typed(ctrl_p + ctrl_q, b"ab", ctrl_p, b"c") == (b"ab" + ctrl_p + b"c", False)
    assert typed(ctrl_p + ctrl_q, b"ab", ctrl_p) == (b"ab", False)               # held, not lost ...
    assert typed(ctrl_p + ctrl_q, b"ab" + ctrl_p, ctrl_q, b"after") == (b"ab", True)  # ... unless they complete
    assert typed(ctrl_p + ctrl_q, ctrl_p, ctrl_p, ctrl_q) == (ctrl_p, True)      # a repeated first key
    assert typed(b"aab", b"xaa", b"a", b"b") == (b"xa", True)
    assert typed(b"\x01x", b"\x01", b"y\x01x") == (b"\x01y", True)
    assert typed(ctrl_p + ctrl_q, b"plain " * 1000) == (b"plain " * 1000, False)


@pytest.mark.parametrize("spec, keys", [
    (None, b"\x10\x11"), ("", b"\x10\x11"), ("ctrl-a,x", b"\x01x"), ("ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_",
                                                                     b"\x00\x1b\x1c\x1d\x1e\x1f"),
    ("ctrl-z,DEL,,", None), ("ctrl-P", None), ("ctrl-", None), ("ab", None), ("\u00e9", None), ("a,,b", None)])
def test_detach_keys_are_read_as_dockers(spec, keys):
    from corral.terminal import parse_detach_keys
    from corral.types import InvalidInput
    if keys is None:
        with pytest.raises(InvalidInput, match="no such key"):
            parse_detach_keys(spec)
    else:
        assert parse_detach_keys(spec) == keys
