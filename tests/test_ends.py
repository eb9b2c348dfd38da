"""How a container's end is told when it races something: init failing its setup while the
launcher still places it, a kill recorded after the task ended on its own, a supervisor that has
exited but is not yet reaped."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from corral.containerizers.mesos import supervisor
from corral.containerizers.mesos.launcher import Launcher
from corral.containerizers.mesos.supervisor import LaunchSpec
from corral.types import TASK_FAILED, TASK_FINISHED, TASK_KILLED, ContainerConfig


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


def _until(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_zombie_supervisor_is_not_a_live_one(corral):
    """The task exited 3; its supervisor has exited but this process (its parent) has not reaped
    it yet. The container has ended: a SIGTERM now reaches nothing and must not make it killed."""
    mc = corral.sync()
    mc.launch("zombie", ContainerConfig(argv=["/bin/sh", "-c", "exit 3"]))
    supervisor = mc.files("zombie").pids()["supervisor"]["pid"]
    _until(lambda: _state(supervisor) == "Z")
    assert mc.status("zombie")["state"] == "EXITED"
    mc.kill("zombie", signal.SIGTERM)
    assert mc.files("zombie").kill_record() is None
    termination = mc.wait("zombie")
    assert (termination.state, termination.exit_code, termination.message) == (
        TASK_FAILED, 3, "Command exited with status 3")
    mc.destroy("zombie", remove_sandbox=True)


def test_a_kill_recorded_after_the_task_ended_does_not_make_it_killed(corral):
    """A kill that got past its checks just as the task exited (the supervisor not yet gone) is
    recorded after the end: the task's own exit status is its end."""
    mc = corral.sync()
    mc.launch("late", ContainerConfig(argv=["/bin/sh", "-c", "exit 3"]))
    files = mc.files("late")
    _until(lambda: files.status() is not None)
    files.record_kill(signal.SIGTERM)
    termination = mc.wait("late")
    assert (termination.state, termination.exit_code, termination.message) == (
        TASK_FAILED, 3, "Command exited with status 3")
    mc.destroy("late", remove_sandbox=True)


def test_a_task_that_exits_on_its_own_before_a_recorded_sigkill_reaches_it(corral):
    """The SIGKILL is recorded (as kill() does before signalling), then the task exits 0 on its own
    before any signal is sent: SIGKILL cannot be caught, so it ended nothing."""
    mc = corral.sync()
    mc.launch("race", ContainerConfig(argv=["/bin/sh", "-c", "while [ ! -e go ]; do sleep 0.01; done"]))
    files = mc.files("race")
    files.record_kill(signal.SIGKILL)
    open(os.path.join(files.sandbox, "go"), "w").close()
    termination = mc.wait("race")
    assert (termination.state, termination.exit_code) == (TASK_FINISHED, 0)
    mc.destroy("race", remove_sandbox=True)


def test_kills_that_end_the_task_still_read_killed(corral):
    mc = corral.sync()
    for sig, script in ((signal.SIGKILL, "sleep 100"), (signal.SIGTERM, "trap 'exit 3' TERM; sleep 100 & wait")):
        mc.launch("killed", ContainerConfig(argv=["/bin/sh", "-c", script]))
        mc.kill("killed", sig)      # trapped or not, TERM ends it: killed
        termination = mc.wait("killed")
        assert termination.state == TASK_KILLED, termination
        assert termination.message.startswith(f"Killed by corral with {sig.name}")
        mc.destroy("killed", remove_sandbox=True)


@pytest.mark.parametrize("user", [None, "nobody"])      # the task spawned, or forked to change user
def test_a_kill_sent_before_init_is_ready_for_it_reaches_the_task(corral, monkeypatch, user):
    """A SIGTERM sent as soon as the launch returns can reach init before init has set up its
    handlers; a loaded host makes that window wide (here init is held 0.3 s at its start, in the
    supervisor this process forks). The signal must wait for init, not be dropped: the task dies
    of it, and does not run on to exit 0."""
    real_init = supervisor._init
    monkeypatch.setattr(supervisor, "_init", lambda *args: (time.sleep(0.3), real_init(*args)))
    mc = corral.sync()
    mc.launch("early", ContainerConfig(argv=["sleep", "30"], user=user))
    mc.kill("early", signal.SIGTERM)
    termination = mc.wait("early", timeout=15)
    assert termination is not None, "the SIGTERM was lost: the task still runs"
    assert (termination.state, termination.signal) == (TASK_KILLED, signal.SIGTERM), termination
    mc.destroy("early", remove_sandbox=True)
