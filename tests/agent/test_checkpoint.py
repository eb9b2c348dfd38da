"""The agent's checkpoint under <work-dir>/meta: layout, status streams, boot ids, damaged files
with and without strict, and writes that a SIGKILL cannot tear."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from corral.agent.checkpoint import Checkpoint
from corral import linux
from corral.files import DamagedFile
from corral.types import TASK_FINISHED, TASK_KILLED, TASK_LOST, TASK_RUNNING, TASK_STARTING
from tests.fskit import has_topdir, need_topdir

CONTAINER = {"config": {"argv": ["true"]}, "resources": [], "containerizer": "mesos"}


def test_layout_and_status_stream(tmp_path):
    cp = Checkpoint(str(tmp_path))
    assert cp.add_container("c1", CONTAINER)["state"] == TASK_STARTING
    assert os.listdir(tmp_path / "meta" / "containers" / "c1") == ["container.json"]    # one file makes a launch's
    assert [s["state"] for s in cp.statuses("c1")] == [TASK_STARTING]
    assert cp.append_status("c1", TASK_RUNNING)["state"] == TASK_RUNNING
    assert cp.append_status("c1", TASK_RUNNING) is None                  # a repeat adds nothing
    end = cp.append_status("c1", TASK_FINISHED, None, "Command exited with status 0", exit_status=0)
    assert end["exit_status"] == 0
    assert cp.append_status("c1", TASK_LOST, "REASON_X", "late") is None  # an end is reported once
    stream = cp.statuses("c1")
    assert [s["state"] for s in stream] == [TASK_STARTING, TASK_RUNNING, TASK_FINISHED]
    assert stream[0]["timestamp"] <= stream[1]["timestamp"] <= stream[2]["timestamp"]
    assert sorted(os.listdir(tmp_path / "meta" / "containers" / "c1")) == ["container.json", "statuses.json"]

    loaded = Checkpoint(str(tmp_path)).load()
    assert loaded.containers == {"c1": {"container": CONTAINER, "statuses": stream}}
    assert (loaded.damaged, loaded.incomplete, loaded.rebooted) == ({}, [], False)
    cp.remove_container("c1")
    assert cp.container_ids() == [] and Checkpoint(str(tmp_path)).load().containers == {}
    with pytest.raises(ValueError, match="not a task state"):
        cp.append_status("c1", "TASK_WEIRD")


def test_the_containers_dir_spreads_each_containers_checkpoint(tmp_path):
    """ext4 places each container's checkpoint dir in a block group of its own choosing (chattr
    +T on meta/containers: see corral.files.spread_subdirectories)."""
    need_topdir(tmp_path)
    Checkpoint(str(tmp_path)).add_container("c1", CONTAINER)
    assert has_topdir(tmp_path / "meta" / "containers") and not has_topdir(tmp_path / "meta" / "containers" / "c1")


def test_agent_id_is_kept_and_a_reboot_is_noticed(tmp_path):
    cp = Checkpoint(str(tmp_path))
    agent_id = cp.agent_id()
    assert Checkpoint(str(tmp_path)).agent_id() == agent_id
    assert not cp.rebooted()                                             # nothing recorded yet
    cp.record_boot()
    assert (tmp_path / "meta" / "boot_id").read_text().strip() == linux.boot_id()
    assert not cp.rebooted()
    (tmp_path / "meta" / "boot_id").write_text("00000000-0000-0000-0000-000000000000\n")
    assert cp.rebooted() and cp.load().rebooted
    assert cp.rebooted(), "load must not record the boot: a start that fails later must see the reboot again"


@pytest.mark.parametrize("name, content, problem", [
    ("container.json", '{"config": {"argv": ["tr', "not valid JSON"),
    ("container.json", "", "not valid JSON"),
    ("container.json", "[1, 2]", "not a container record"),
    ("statuses.json", '[{"state": "TASK_RUNNING"}, {"sta', "not valid JSON"),
    ("statuses.json", '[{"state": "TASK_BOGUS"}]', "not a list of task statuses"),
])
def test_damaged_files_stop_a_strict_agent_and_are_reported_without_strict(tmp_path, name, content, problem):
    cp = Checkpoint(str(tmp_path))
    cp.add_container("good", CONTAINER)
    cp.add_container("bad", CONTAINER)
    path = tmp_path / "meta" / "containers" / "bad" / name
    path.write_text(content)
    with pytest.raises(DamagedFile, match=f"damaged state file {path}: {problem}"):
        Checkpoint(str(tmp_path)).load()
    loaded = Checkpoint(str(tmp_path), strict=False).load()
    assert list(loaded.containers) == ["good"]
    assert list(loaded.damaged) == ["bad"] and str(path) in loaded.damaged["bad"]


def test_a_launch_checkpointed_without_statuses_reads_as_starting_at_its_creation(tmp_path):
    cp = Checkpoint(str(tmp_path))
    cp.add_container("c1", {**CONTAINER, "created": 1234.5})
    cp.add_container("c2", CONTAINER)                        # no creation time: the start is when it is read
    before = time.time()
    loaded = Checkpoint(str(tmp_path)).load()
    assert loaded.containers["c1"]["statuses"] == [
        {"state": TASK_STARTING, "timestamp": 1234.5, "reason": None, "message": ""}]
    assert [s["state"] for s in loaded.containers["c2"]["statuses"]] == [TASK_STARTING]
    assert loaded.containers["c2"]["statuses"][0]["timestamp"] >= before
    fresh = Checkpoint(str(tmp_path))                          # an end appended after a restart follows it
    fresh.load()
    fresh.append_status("c1", TASK_LOST, None, "gone")
    assert [s["state"] for s in Checkpoint(str(tmp_path)).statuses("c1")] == [TASK_STARTING, TASK_LOST]


def test_a_stream_written_whole_with_its_start_still_loads(tmp_path):
    """statuses.json as earlier agents wrote it, TASK_STARTING first, before any other status."""
    cp = Checkpoint(str(tmp_path))
    cp.add_container("old", CONTAINER)
    stream = [{"state": TASK_STARTING, "timestamp": 1.0, "reason": None, "message": ""}]
    (tmp_path / "meta" / "containers" / "old" / "statuses.json").write_text(json.dumps(stream))
    assert Checkpoint(str(tmp_path)).load().containers["old"]["statuses"] == stream


def test_a_checkpoint_cut_short_before_the_launch_is_dropped(tmp_path):
    os.makedirs(tmp_path / "meta" / "containers" / "half")
    loaded = Checkpoint(str(tmp_path)).load()
    assert (loaded.containers, loaded.incomplete) == ({}, ["half"])
    assert not (tmp_path / "meta" / "containers" / "half").exists()


def test_a_damaged_agent_id(tmp_path):
    os.makedirs(tmp_path / "meta")
    (tmp_path / "meta" / "agent_id").write_text("not/an id\n")
    with pytest.raises(DamagedFile, match="agent_id: not an agent id"):
        Checkpoint(str(tmp_path)).agent_id()
    fresh = Checkpoint(str(tmp_path), strict=False).agent_id()
    assert fresh != "not/an id" and Checkpoint(str(tmp_path)).agent_id() == fresh


WRITER = """
import sys
from corral.agent.checkpoint import Checkpoint
cp = Checkpoint(sys.argv[1])
i = 0
while True:
    cid = f"c{i % 20}"
    if cid not in cp.container_ids():
        cp.add_container(cid, {"config": {"argv": ["true"], "n": i}, "padding": "x" * 50000})
    else:
        cp.append_status(cid, "TASK_RUNNING" if i % 40 < 20 else "TASK_KILLED")
    if i % 40 == 39:
        cp.remove_container(cid)
    print(i, flush=True)
    i += 1
"""


@pytest.mark.parametrize("after", [0.15, 0.3, 0.45])
def test_a_sigkilled_writer_leaves_a_checkpoint_that_loads_strictly(tmp_path, after):
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        writer.stdout.readline()            # it has started writing
        time.sleep(after)
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    loaded = Checkpoint(str(tmp_path)).load()      # strict: any torn file would raise
    assert loaded.containers or loaded.incomplete
    for found in loaded.containers.values():
        assert [s["state"] for s in found["statuses"]][:1] == [TASK_STARTING]
        assert found["statuses"][-1]["state"] in (TASK_STARTING, TASK_RUNNING, TASK_KILLED)
    leftovers = [f for _, _, files in os.walk(tmp_path / "meta") for f in files if ".tmp." in f]
    assert leftovers == []                          # the torn write of the kill, if any, is gone
