"""How a container's end is told when it races something: init failing its setup while the
launcher still places it, a kill recorded after the task ended on its own, a supervisor that has
exited but is not yet reaped."""

from __future__ import annotations

import json
import os
import time

from containerizers.mesos.launcher import Launcher
from containerizers.mesos.supervisor import LaunchSpec


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return None


def test_init_that_fails_its_setup_waits_for_the_launcher_and_reports_why(corral, tmp_path):
    """The launcher takes its time between the fork and the release (here 0.3 s, as a loaded host
    would): init has failed by then, but it waits, so the launcher's moves succeed, and the cause
    reaches the supervisor's record."""
    launcher = Launcher(corral.cgroups_root)
    spec = LaunchSpec(argv=["/bin/true"], env={}, cwd="/", stdout_path=str(tmp_path / "out"),
                      stderr_path=str(tmp_path / "err"), status_path=str(tmp_path / "status.json"),
                      namespaces=frozenset({"pid", "uts"}), hostname="h" * 65)
    forked = launcher.fork("setup-race", spec)
    try:
        time.sleep(0.3)
        assert _state(forked.init_pid) not in (None, "Z"), "init left before the launcher was done with it"
        launcher.tracking_cgroup("setup-race").attach(forked.init_pid)    # what isolators do: no ESRCH
        forked.release()
        os.waitpid(forked.supervisor_pid, 0)
        status = json.loads((tmp_path / "status.json").read_text())
        assert status["error"] == f"cannot set up the container: sethostname: {'h' * 65!r} is longer than 64 bytes"
        assert os.WEXITSTATUS(status["init_status"]) == 1
    finally:
        launcher.cleanup("setup-race")
