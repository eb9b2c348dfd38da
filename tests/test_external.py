"""The external containerizer: the runc example end to end, and every way a program can misbehave."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from corral.containerizers.external import ExternalContainerizer, ExternalError, SyncExternalContainerizer
from corral.types import (LAUNCHED, NOT_SUPPORTED, REASON_CONTAINER_LIMITATION_MEMORY, TASK_FAILED, TASK_KILLED,
                          TASK_LOST, ContainerConfig, NoSuchContainer, Resources)

RUNC_EXAMPLE = str(Path(__file__).parents[1] / "examples" / "runc-containerizer")

pytestmark = pytest.mark.usefixtures("no_threads_left")     # its asyncio face runs on threads


@pytest.fixture
def ext(tmp_path):
    """Factory for external containerizers in this test's dirs; checks that runc was left empty."""
    made = []

    def make(path=RUNC_EXAMPLE, **kwargs):
        made.append(SyncExternalContainerizer(str(tmp_path / "work"), str(tmp_path / "run"), path, **kwargs))
        return made[-1]
    yield make
    for ec in made:
        root = os.path.join(ec.program_dir, "runc")
        if os.path.isdir(root):
            listed = subprocess.run(["runc", "--root", root, "list", "-q"], capture_output=True, text=True).stdout
            assert not listed.split(), f"runc containers left: {listed.split()}"
        # The example's cgroups: /corral-runc-<tag>-<id>, <tag> from its runc root (v1 memory or cgroup2).
        tag = hashlib.sha1(os.path.realpath(root).encode()).hexdigest()[:10]
        left = [p for top in ("/sys/fs/cgroup/memory", "/sys/fs/cgroup") for p in Path(top).glob(f"corral-runc-{tag}-*")]
        assert not left, f"runc cgroups left: {left}"


def test_runc_example_end_to_end(ext, rootfs):
    async def main():
        sync = ext()
        ec = ExternalContainerizer(sync.work_dir, os.path.dirname(sync.state_dir), RUNC_EXAMPLE)
        assert await ec.recover() == []
        config = ContainerConfig(argv=["sh", "-c", "echo out $MESOS_SANDBOX $K; echo err >&2; echo v > /data/f; exit 3"],
                                 env={"K": "v"}, rootfs=rootfs, volumes=["data:/data"])
        assert await ec.launch("e1", config) == LAUNCHED
        termination = await ec.wait("e1")
        assert (termination.state, termination.exit_code) == (TASK_FAILED, 3)
        sandbox = (await ec.status("e1"))["sandbox"]
        assert open(os.path.join(sandbox, "stdout")).read() == "out /mnt/mesos/sandbox v\n"
        assert open(os.path.join(sandbox, "stderr")).read() == "err\n"
        assert open(os.path.join(sandbox, "data", "f")).read() == "v\n"
        assert (await ec.destroy("e1")).exit_code == 3

        await ec.launch("e2", ContainerConfig(argv=["sleep", "600"], rootfs=rootfs,
                                              resources=Resources(cpus=0.5, mem_mb=64)))
        stats = await ec.usage("e2")
        assert stats["processes"] == 1 and stats["mem_limit_bytes"] == 64 * 1024 * 1024
        await ec.update("e2", Resources(mem_mb=128))
        assert (await ec.usage("e2"))["mem_limit_bytes"] == 128 * 1024 * 1024
        await ec.kill("e2", signal.SIGKILL)
        termination = await ec.wait("e2")
        assert termination.state == TASK_KILLED and termination.signal == signal.SIGKILL
        await ec.destroy("e2")

        await ec.launch("e3", ContainerConfig(argv=["sleep", "600"], rootfs=rootfs))
        assert (await ec.destroy("e3")).state == TASK_KILLED
        assert await ec.containers() == []
    asyncio.run(main())


def test_runc_example_oom(ext, rootfs):
    ec = ext()
    ec.launch("oom", ContainerConfig(argv=["sh", "-c", "x=a; while true; do x=$x$x; done"], rootfs=rootfs,
                                     resources=Resources(mem_mb=32)))
    termination = ec.wait("oom")
    assert (termination.state, termination.reason) == (TASK_FAILED, REASON_CONTAINER_LIMITATION_MEMORY)
    ec.destroy("oom")


def test_runc_example_declines_what_it_cannot_run(ext, rootfs):
    ec = ext()
    assert ec.launch("n1", ContainerConfig(argv=["true"])) == NOT_SUPPORTED               # no rootfs
    assert ec.launch("n2", ContainerConfig(argv=["true"], rootfs=rootfs, containerizer="docker")) == NOT_SUPPORTED
    assert ec.containers() == []
    assert not os.path.exists(os.path.join(ec.work_dir, "containers", "n1"))


RECOVER_CHILD = """
import sys
from corral.containerizers.external import SyncExternalContainerizer
from corral.types import ContainerConfig
work, run, path, rootfs = sys.argv[1:5]
ec = SyncExternalContainerizer(work, run, path)
for cid, argv in (("running", ["sleep", "600"]), ("exited", ["sh", "-c", "exit 5"]), ("forgotten", ["sleep", "600"])):
    ec.launch(cid, ContainerConfig(argv=argv, rootfs=rootfs))
"""


def test_runc_example_recovery_after_corral_is_gone(ext, rootfs):
    ec = ext()
    subprocess.run([sys.executable, "-c", RECOVER_CHILD, ec.work_dir, os.path.dirname(ec.state_dir), RUNC_EXAMPLE,
                    rootfs], check=True, timeout=60)
    shutil.rmtree(os.path.join(ec.state_dir, "containers", "forgotten"))     # corral forgot it: an orphan
    assert sorted(ec.recover()) == ["exited", "running"]
    assert sorted(os.listdir(os.path.join(ec.program_dir, "containers"))) == ["exited", "running"]
    assert ec.wait("exited").exit_code == 5
    ec.kill("running", signal.SIGKILL)
    assert ec.wait("running").state == TASK_KILLED
    for cid in ("exited", "running"):
        ec.destroy(cid)


# -- misbehaving programs ------------------------------------------------------------------

def program(tmp_path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


GOOD = 'case "$1" in launch) echo \'{"result": "LAUNCHED"}\';; wait) echo \'{"exit_code": 0}\';; *) echo "{}";; esac\n'


def test_missing_program(ext, tmp_path):
    ec = ext(str(tmp_path / "nowhere"))
    with pytest.raises(ExternalError, match=r"external containerizer .*nowhere launch c1: cannot run it: "
                                            r"No such file or directory"):
        ec.launch("c1", ContainerConfig(argv=["true"]))
    assert ec.containers() == []


def test_program_not_executable(ext, tmp_path):
    path = tmp_path / "plain"
    path.write_text(GOOD)
    with pytest.raises(ExternalError, match="cannot run it: Permission denied"):
        ext(str(path)).launch("c1", ContainerConfig(argv=["true"]))


def test_non_zero_exit_quotes_stderr(ext, tmp_path):
    ec = ext(program(tmp_path, "fails", 'echo "warming up" >&2; echo "no cgroup for you" >&2; exit 3\n'))
    with pytest.raises(ExternalError, match=r"launch c1: exited with status 3: no cgroup for you$"):
        ec.launch("c1", ContainerConfig(argv=["true"]))
    assert ec.containers() == []
    log = Path(ec.work_dir, "containers", "c1", "containerizer.log").read_text()
    assert "warming up" in log


def test_bad_json(ext, tmp_path):
    ec = ext(program(tmp_path, "chatty", 'echo "launched it!"\n'))
    with pytest.raises(ExternalError, match=r"launch c1: its output is not JSON"):
        ec.launch("c1", ContainerConfig(argv=["true"]))
    ec = ext(program(tmp_path, "listy", 'echo "[1, 2]"\n'))
    with pytest.raises(ExternalError, match=r"launch c2: its output is not a JSON object"):
        ec.launch("c2", ContainerConfig(argv=["true"]))
    ec = ext(program(tmp_path, "odd", 'echo \'{"result": "MAYBE"}\'\n'))
    with pytest.raises(ExternalError, match=r"'result' must be LAUNCHED or NOT_SUPPORTED, not 'MAYBE'"):
        ec.launch("c3", ContainerConfig(argv=["true"]))


def test_hang_past_the_timeout_kills_the_program_and_its_children(ext, tmp_path):
    marker = tmp_path / "child.pid"
    ec = ext(program(tmp_path, "hangs", f'sleep 600 & echo $! > {marker}; wait\n'), timeout=0.5)
    started = time.monotonic()
    with pytest.raises(ExternalError, match=r"launch c1: no answer within 0.5s; killed it"):
        ec.launch("c1", ContainerConfig(argv=["true"]))
    assert time.monotonic() - started < 5
    child = int(marker.read_text())
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{child}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{child}"), "the hung program's child outlived it"


def test_a_failure_touches_only_its_container(ext, tmp_path):
    """wait fails for one container (bad JSON); the other goes on and ends normally."""
    body = ('read -r request\n'
            'case "$1:$request" in\n'
            '  launch:*) echo \'{"result": "LAUNCHED"}\';;\n'
            '  wait:*broken*) echo "not json";;\n'
            '  wait:*) echo \'{"exit_code": 0}\';;\n'
            '  *) echo "{}";;\n'
            'esac\n')
    ec = ext(program(tmp_path, "picky", body))
    ec.launch("broken", ContainerConfig(argv=["true"]))
    ec.launch("fine", ContainerConfig(argv=["true"]))
    with pytest.raises(ExternalError, match=r"wait broken: its output is not JSON"):
        ec.wait("broken")
    assert ec.wait("fine").exit_code == 0
    assert ec.status("broken")["state"] == "RUNNING"        # unchanged by the failed call
    with pytest.raises(NoSuchContainer):
        ec.wait("unknown")
    for cid in ("broken", "fine"):
        ec.destroy(cid)


def test_recover_marks_what_the_program_forgot_as_lost(ext, tmp_path):
    ec = ext(program(tmp_path, "forgetful", 'case "$1" in launch) echo \'{"result": "LAUNCHED"}\';; '
                                            '*) echo \'{"containers": []}\';; esac\n'))
    ec.launch("c1", ContainerConfig(argv=["true"]))
    assert ec.recover() == ["c1"]
    assert ec.wait("c1").state == TASK_LOST
    ec.destroy("c1")


def test_cli_run_with_the_runc_example(rootfs, tmp_path):
    corral = os.path.join(os.path.dirname(sys.executable), "corral")
    env = dict(os.environ, CORRAL_WORK_DIR=str(tmp_path / "work"), CORRAL_RUNTIME_DIR=str(tmp_path / "run"))
    ran = subprocess.run([corral, "run", "--containerizer", "external", "--external-containerizer-path", RUNC_EXAMPLE,
                          "--rootfs", rootfs, "--", "sh", "-c", "echo out; echo err >&2; exit 3"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert (ran.returncode, ran.stdout, ran.stderr) == (3, "out\n", "err\n")
    assert os.listdir(tmp_path / "run" / "external" / "program" / "containers") == []


WRITES_OUTPUT = ('read -r request\n'
                 'case "$1" in\n'
                 '  launch) sandbox=$(echo "$request" | sed -n \'s/.*"sandbox": "\\([^"]*\\)".*/\\1/p\')\n'
                 '          echo out > "$sandbox/stdout"; echo err > "$sandbox/stderr"\n'
                 '          echo \'{"result": "LAUNCHED"}\';;\n'
                 '  wait|destroy) echo \'{"exit_code": 0}\';;\n'
                 '  *) echo "{}";;\n'
                 'esac\n')


def test_cli_logs_follow_of_an_external_container(tmp_path):
    """logs --follow waits for the end as the containerizer can (the program's wait), then prints."""
    corral = os.path.join(os.path.dirname(sys.executable), "corral")
    env = dict(os.environ, CORRAL_WORK_DIR=str(tmp_path / "work"), CORRAL_RUNTIME_DIR=str(tmp_path / "run"),
               CORRAL_CONTAINERIZERS="external")
    path = program(tmp_path, "writes", WRITES_OUTPUT)
    given = ["--external-containerizer-path", path]

    def cli(*args):
        return subprocess.run([corral, *given, *args], env=env, capture_output=True, text=True, timeout=60)
    assert cli("run", "--detach", "--name", "x1", "--", "true").stdout == "x1\n"
    followed = cli("logs", "--follow", "x1")
    assert (followed.returncode, followed.stdout, followed.stderr) == (0, "out\n", "")
    assert cli("logs", "--stderr", "x1").stdout == "err\n"
    assert cli("destroy", "x1").returncode == 0
