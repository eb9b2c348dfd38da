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
    from corral.terminal import Terminal, relay, set_window_size
    far = sys.argv[1]
    with Terminal() as terminal:
        master, slave = os.openpty()
        set_window_size(slave, *terminal.size())
        child = subprocess.Popen([sys.executable, "-c", far], stdin=slave, stdout=slave, stderr=slave,
                                 start_new_session=True, preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        os.close(slave)
        if sys.argv[2] == "raise":
            raise SystemExit("raised")
        relay(0, master, [(master, 1)], terminal=terminal,
              on_resize=lambda rows, cols: set_window_size(master, rows, cols))
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
