"""Work done in a forked child of the test: what it changes of itself (credentials, a seccomp
filter, a private mount namespace) dies with it, and only its answer comes back."""

from __future__ import annotations

import os


def in_child(fn) -> str:
    """fn()'s string, computed in a forked child; "error ..." if it raised."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(write, str(fn()).encode())
        except BaseException as e:  # noqa: BLE001 - the answer is the error, in the parent
            os.write(write, f"error {e!r}".encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        answer = f.read()
    os.waitpid(pid, 0)
    return answer
