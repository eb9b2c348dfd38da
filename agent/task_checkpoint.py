"""The checkpoint of frameworks' tasks: corral's own layout under the Agent's meta/, with Mesos's
record format for the status updates.

    meta/slave_id                                                     the id the master gave this agent
    meta/frameworks/<framework id>/framework.info                     FrameworkInfo (protobuf)
    meta/frameworks/<framework id>/runs/<container id>/task.info      TaskInfo (protobuf)
    meta/frameworks/<framework id>/runs/<container id>/task.updates   StatusUpdateRecords, each
                                                                      with a 4-byte length first

A run's directory goes once all its updates are acknowledged, and a framework's with its last run:
recovery reads only what may still need sending.

Every write is durable (the file, and its directory's entry when it is new): a task the master
was told of is never lost to a crash.
"""

from __future__ import annotations

import os
import re
import struct

from corral.files import read_text, write_atomic

from . import messages as m
from .checkpoint import fsync_directory, makedirs_durable


def write_run(root: str, framework, task, directory: str) -> None:
    """Checkpoint a new run: its framework's FrameworkInfo and its TaskInfo, durably."""
    makedirs_durable(directory)
    write_atomic(os.path.join(root, framework.id.value, "framework.info"), framework.SerializeToString(), durable=True)
    write_atomic(os.path.join(directory, "task.info"), task.SerializeToString(), durable=True)


def append(run, record) -> None:
    """Append a record to the task's updates file, durably (file, and the entry when it is new)."""
    path = os.path.join(run.directory, "task.updates")
    new = not os.path.exists(path)
    body = record.SerializeToString()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, struct.pack("<I", len(body)) + body)
        os.fsync(fd)
    finally:
        os.close(fd)
    if new:
        fsync_directory(run.directory)


def replay(run) -> None:
    """Rebuild the run's updates from its file; a record cut short by a crash ends the file."""
    raw = read_bytes(os.path.join(run.directory, "task.updates")) or b""
    offset = 0
    while offset + 4 <= len(raw):
        (size,) = struct.unpack_from("<I", raw, offset)
        if offset + 4 + size > len(raw):
            break
        record = m.StatusUpdateRecord.FromString(raw[offset + 4:offset + 4 + size])
        offset += 4 + size
        if record.type == m.ENUMS["RecordType"]["UPDATE"]:
            run.made.append(m.state_name(record.update.status.state))
            run.pending.append(record.update)
        elif run.pending and run.pending[0].status.uuid == record.uuid:
            run.pending.popleft()
    if offset != len(raw):
        with open(os.path.join(run.directory, "task.updates"), "r+b") as f:
            f.truncate(offset)


def read_bytes(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def is_id(text: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,200}", text))


def read_slave_id(work_dir: str) -> str | None:
    return (read_text(os.path.join(work_dir, "meta", "slave_id")) or "").strip() or None


def write_slave_id(work_dir: str, slave_id: str) -> None:
    write_atomic(os.path.join(work_dir, "meta", "slave_id"), slave_id + "\n", durable=True)
