"""A container's files: the verdict and the kill record are the first writer's, whoever races for them."""

from __future__ import annotations

import signal

from corral.containerizers.state import ContainerFiles
from corral.types import TASK_FAILED, TASK_KILLED, Termination


def _files(tmp_path) -> ContainerFiles:
    files = ContainerFiles(str(tmp_path / "run"), str(tmp_path / "work"), "c1")
    files.create()
    return files


def test_the_first_verdict_written_stands_against_a_racing_writer(tmp_path):
    files = _files(tmp_path)
    other = ContainerFiles(str(tmp_path / "run"), str(tmp_path / "work"), "c1")     # another process's view
    first = Termination("c1", 9, TASK_KILLED, None, "killed")
    late = Termination("c1", 256, TASK_FAILED, None, "exited 1")

    def decide_slowly() -> Termination:
        # While this writer decides, another one settles the verdict first.
        assert other.settle(lambda: first) == first
        return late
    assert files.settle(decide_slowly) == first
    assert files.termination() == first and other.termination() == first


def test_the_first_kill_record_stands(tmp_path):
    files = _files(tmp_path)
    assert files.record_kill(signal.SIGKILL, "REASON_CONTAINER_LIMITATION_MEMORY", "out of memory")
    assert not files.record_kill(signal.SIGTERM)
    record = files.kill_record()
    assert isinstance(record.pop("at"), int)        # when it was recorded (CLOCK_MONOTONIC ns)
    assert record == {"signal": signal.SIGKILL, "reason": "REASON_CONTAINER_LIMITATION_MEMORY",
                      "message": "out of memory"}
    assert sorted(p.name for p in (tmp_path / "run" / "containers" / "c1").iterdir()) == ["kill.json"]
