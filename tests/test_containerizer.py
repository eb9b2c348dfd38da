"""The asyncio MesosContainerizer, and what survives the process that launched a container."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

import pytest

from corral.containerizers.mesos.containerizer import MesosContainerizer
from corral.containerizers.mesos.launcher import SUPERVISORS
from corral.types import (LAUNCHED, NOT_SUPPORTED, STATISTICS_FIELDS, ContainerConfig, ContainerExists, InvalidInput,
                          Resources, TASK_FAILED, TASK_FINISHED, TASK_KILLED, TASK_LOST)
from corral.cgroups import cgroup_for

from tests.cgroupkit import cgroup_of
from tests.fskit import has_topdir, need_topdir


def _mc(corral, **kwargs) -> MesosContainerizer:
    return MesosContainerizer(corral.work_dir, corral.runtime_dir, corral.cgroups_root, **kwargs)


def sh(script: str, **kwargs) -> ContainerConfig:
    return ContainerConfig(argv=["/bin/sh", "-c", script], **kwargs)


def test_launch_wait_usage_update_destroy(corral):
    async def scenario():
        mc = _mc(corral)
        assert await mc.launch("c1", sh("sleep 0.3; exit 5", resources=Resources(cpus=0.5, mem_mb=64))) == LAUNCHED
        usage = await mc.usage("c1")
        assert set(STATISTICS_FIELDS) <= set(usage)
        assert usage["mem_limit_bytes"] == 64 * 1024 * 1024 and usage["cpus_limit"] == 0.5
        await mc.update("c1", Resources(cpus=2, mem_mb=128))
        usage = await mc.usage("c1")
        assert usage["mem_limit_bytes"] == 128 * 1024 * 1024 and usage["cpus_limit"] == 2
        first, second = await asyncio.gather(mc.wait("c1"), mc.wait("c1"))
        assert first == second
        assert (first.state, first.exit_code, first.message) == (TASK_FAILED, 5, "Command exited with status 5")
        assert (await mc.status("c1"))["state"] == "EXITED"
        assert await mc.destroy("c1") == first
        assert await mc.containers() == []
    asyncio.run(scenario())


def test_not_supported_leaves_nothing(corral):
    async def scenario():
        mc = _mc(corral)
        assert await mc.launch("d", sh("true", containerizer="docker")) == NOT_SUPPORTED
        assert await mc.containers() == []
    asyncio.run(scenario())


def test_oom_event_ends_the_container_with_a_memory_limitation(corral):
    async def scenario():
        mc = _mc(corral)
        # The hog's child is OOM-killed; the shell would carry on, but the limitation ends it. The
        # hog touches 300 MB at once: a pipe of small reads and writes took over 30 s to reach the
        # limit in the 1-vCPU cgroup2 guest, every system call passing the seccomp filter.
        await mc.launch("oom", sh(f"{sys.executable} -c 'b = bytes(1) * (300 << 20)'; sleep 1000",
                                  resources=Resources(mem_mb=40)))
        termination = await asyncio.wait_for(mc.wait("oom"), 60)
        assert termination.state == TASK_FAILED
        assert termination.reason == "REASON_CONTAINER_LIMITATION_MEMORY"
        assert "Requested: 40MB" in termination.message
        await mc.destroy("oom")
    asyncio.run(scenario())


def test_destroy_while_running_is_killed(corral):
    async def scenario():
        mc = _mc(corral)
        await mc.launch("k", sh("sleep 1000"))
        waiter = asyncio.ensure_future(mc.wait("k"))
        termination = await mc.destroy("k", remove_sandbox=True)
        assert termination.state == TASK_KILLED and termination.signal == signal.SIGKILL
        assert (await waiter).state == TASK_KILLED
        assert not os.path.exists(os.path.join(corral.work_dir, "containers", "k"))
    asyncio.run(scenario())


def test_a_new_containerizer_recovers_running_and_ended_containers(corral):
    async def scenario():
        first = _mc(corral)
        await first.launch("running", sh("sleep 1000"))
        await first.launch("ended", sh("exit 0"))
        await first.wait("ended")
        # An orphan: a tracking cgroup with a live process that no runtime dir knows.
        orphan = first.sync.launcher.tracking_cgroup("orphan")
        orphan.create()
        proc = await asyncio.create_subprocess_exec("sh", "-c", "read go; sleep 1000", stdin=asyncio.subprocess.PIPE)
        orphan.attach(proc.pid)
        proc.stdin.write(b"go\n")

        second = _mc(corral)
        assert sorted(await second.recover()) == ["ended", "running"]
        assert await proc.wait() == -signal.SIGKILL
        assert not orphan.exists()
        # Supervisors have a tracking cgroup of their own, which is no container: recovery keeps it.
        supervisors = cgroup_for(second.sync.launcher.tracking, f"{corral.cgroups_root}/{SUPERVISORS}")
        assert second.sync.files("running").pids()["supervisor"]["pid"] in supervisors.procs()
        assert (await second.status("running"))["state"] == "RUNNING"
        assert (await second.wait("ended")).state == TASK_FINISHED
        await second.kill("running", signal.SIGTERM)
        assert (await second.wait("running")).state == TASK_KILLED
        for cid in await second.containers():
            await second.destroy(cid)
    asyncio.run(scenario())


def test_a_dead_supervisor_means_a_lost_container(corral):
    async def scenario():
        mc = _mc(corral)
        await mc.launch("lost", sh("sleep 1000"))
        supervisor = mc.sync.files("lost").pids()["supervisor"]["pid"]
        os.kill(supervisor, signal.SIGKILL)
        termination = await asyncio.wait_for(mc.wait("lost"), 10)
        assert termination.state == TASK_LOST
        assert "supervisor died" in termination.message
        await mc.destroy("lost")
    asyncio.run(scenario())


def _half_launched(corral, container_id: str):
    """What a launch interrupted before its pids were written leaves: files and a cgroup."""
    from corral.containerizers import state
    mc = corral.sync()
    files = state.ContainerFiles(corral.runtime_dir, corral.work_dir, container_id)
    files.create()
    files.write("config.json", {"config": sh("true", isolation=list(mc.isolation)).to_dict()})
    mc.launcher.tracking_cgroup(container_id).create()
    return mc, files


def test_wait_on_a_container_still_launching_waits(corral):
    _mc_, files = _half_launched(corral, "half")
    waiter = corral.popen("wait", "half")
    try:
        time.sleep(0.3)
        assert waiter.poll() is None          # no verdict while the launch is under way
    finally:
        files.remove()                         # the launch failed and cleaned up
    out, err = waiter.communicate(timeout=5)
    assert (waiter.returncode, err) == (1, "corral: no such container: half\n")
    corral.sync().recover()


def test_recover_removes_a_launch_cut_short(corral):
    mc, files = _half_launched(corral, "cut")
    assert mc.recover() == []
    assert not files.exists() and not os.path.exists(files.sandbox)
    assert not mc.launcher.tracking_cgroup("cut").exists()


def test_destroy_removes_a_launch_cut_short_before_its_config(corral):
    """A launch server killed right after claiming the id leaves only its dirs (issue 9)."""
    from corral.containerizers import state
    mc = MesosContainerizer(corral.work_dir, corral.runtime_dir, corral.cgroups_root)
    files = state.ContainerFiles(corral.runtime_dir, corral.work_dir, "claimed")
    files.create()
    assert asyncio.run(mc.destroy("claimed", remove_sandbox=True)).state == "TASK_LOST"
    assert not files.exists() and not os.path.exists(files.sandbox)


def test_supervisor_is_outside_the_containers_cgroups_and_init_inside(corral):
    mc = corral.sync()
    mc.launch("where", sh("sleep 1000"))
    pids = mc.files("where").pids()
    with open(f"/proc/{pids['supervisor']['pid']}/cgroup") as f:
        assert "/where" not in f.read()
    with open(f"/proc/{pids['init']['pid']}/cgroup") as f:
        init_cgroups = f.read()
    for controller in ("memory", "cpu"):
        assert cgroup_of(init_cgroups, controller) == f"/{corral.cgroups_root}/where"
    for top in corral.cgroup_dirs():     # processes only in leaves: never in corral's root itself
        with open(os.path.join(top, "cgroup.procs")) as f:
            assert f.read() == "", top
    assert os.getsid(pids["supervisor"]["pid"]) == pids["supervisor"]["pid"]   # a session of its own
    mc.destroy("where")


def test_a_launch_moves_no_process_by_a_cgroup_procs_write(corral, monkeypatch, tmp_path):
    """Where cgroup2 is mounted, no process of a launch is moved into a cgroup by another: such a
    write waits an RCU grace period after a quiet spell (bench/placement.py). The supervisor and
    init are cloned into their cgroup2 cgroups and init joins its v1 ones itself, before the task
    runs: the task starts in every cgroup of the container (a pids limit adds one)."""
    from corral.cgroups import hierarchies
    from corral.cgroups.base import Cgroup
    if not hierarchies().v2:
        pytest.skip("a v1-only host: the launcher writes init into its freezer tracking cgroup")
    written = []
    write = Cgroup.write

    def recorded(self, name, value):
        written.append(name)
        write(self, name, value)
    monkeypatch.setattr(Cgroup, "write", recorded)
    mc = corral.sync()
    seen = tmp_path / "cgroups"
    mc.launch("placed", sh(f"cat /proc/self/cgroup > {seen}", resources=Resources(cpus=0.5, mem_mb=64),
                            pids_limit=50))
    assert mc.wait("placed").state == TASK_FINISHED
    mc.destroy("placed")
    assert written and not {"cgroup.procs", "tasks"} & set(written), written     # limits only
    for controller in ("memory", "cpu", "pids"):
        assert cgroup_of(seen.read_text(), controller) == f"/{corral.cgroups_root}/placed", controller
    assert f"0::/{corral.cgroups_root}/placed\n" in seen.read_text()


def test_the_dirs_that_hold_a_dir_per_container_spread_them_over_the_disk(corral, tmp_path):
    """ext4 makes each container's runtime dir and sandbox in a block group of its own choosing
    (chattr +T on their parents), so containers coming and going do not make every file
    creation scan one group's recently freed inodes."""
    need_topdir(tmp_path)
    mc = corral.sync()
    mc.launch("spread", sh("true"))
    files = mc.files("spread")
    mc.wait("spread")
    spread = [has_topdir(os.path.dirname(files.runtime)), has_topdir(os.path.dirname(files.sandbox)),
              has_topdir(files.runtime), has_topdir(files.sandbox)]
    mc.destroy("spread")
    assert spread == [True, True, False, False]         # a container's own files stay together


def test_the_supervisor_hangs_up_its_ended_pipe_once_the_end_is_on_file(corral):
    """A waiter's cue (supervisor.Ended, copied from the supervisor): its hang-up comes once
    status.json is written, so a waiter that wakes on it reads the end, without waiting for the
    supervisor's exit. No file of the runtime dir is made for it."""
    import select
    from corral import linux
    mc = corral.sync()
    mc.launch("cue", sh("sleep 1000"))
    files = mc.files("cue")
    assert sorted(os.listdir(files.runtime)) == ["config.json", "exec.sock", "pids.json"]
    supervisor = files.pids()["supervisor"]
    pidfd = linux.pidfd_of(supervisor["pid"], supervisor["start"])
    fifo = linux.pidfd_getfd(pidfd, supervisor["ended_fd"])
    os.close(pidfd)
    try:
        mc.kill("cue", signal.SIGTERM)
        poller = select.poll()
        poller.register(fifo, select.POLLIN)
        assert poller.poll(10_000), "no hang-up"
        assert files.status() is not None
    finally:
        os.close(fifo)
    assert mc.wait("cue").state == TASK_KILLED
    mc.destroy("cue")


def test_an_isolator_failing_while_the_supervisor_starts_fails_the_launch_and_leaves_nothing(corral, monkeypatch,
                                                                                               tmp_path):
    """An isolator's forked() runs while the supervisor starts init: when it fails, the launch
    fails with its error, init never runs the task, and the supervisor is gone with the rest."""
    from corral.isolators.cgroups.cpu import CpuIsolator

    def no_room(self, container_id):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(CpuIsolator, "forked", no_room)
    mc = corral.sync()
    ran = tmp_path / "ran"
    before = set(_children_of(os.getpid()))
    with pytest.raises(OSError, match="No space left on device"):
        mc.launch("nospace", sh(f"touch {ran}", resources=Resources(cpus=0.5)))
    assert mc.containers() == [] and not ran.exists()
    assert set(_children_of(os.getpid())) <= before     # its supervisor was collected before the launch raised


def _children_of(parent: int) -> list[int]:
    """The processes whose parent is `parent`, zombies too."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(stat[stat.rindex(b")") + 2:].split()[1]) == parent:
                found.append(int(entry))
    return found


def test_a_threaded_process_launches_through_the_launch_server(corral):
    import threading
    mc = _mc(corral, launch_server=True)
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()                                  # from here on this process has two threads

    async def scenario():
        with_threads = _mc(corral)
        with pytest.raises(Exception, match="single-threaded"):
            await with_threads.launch("direct", sh("true"))
        assert await mc.launch("served", sh("exit 3", resources=Resources(mem_mb=64))) == LAUNCHED
        assert (await mc.wait("served")).exit_code == 3
        with pytest.raises(ContainerExists):
            await mc.launch("served", sh("true"))
        with pytest.raises(InvalidInput, match="unknown isolator"):
            await mc.launch("bad", sh("true", isolation=["nope/nope"]))
        launched = await asyncio.gather(*(mc.launch(f"many{i}", sh("true")) for i in range(5)))
        assert launched == [LAUNCHED] * 5
        for cid in await mc.containers():
            await mc.destroy(cid)
    try:
        asyncio.run(scenario())
    finally:
        stop.set()
        worker.join()
        server = mc.launch_server.pid
        mc.close()
        assert not os.path.exists(f"/proc/{server}")
