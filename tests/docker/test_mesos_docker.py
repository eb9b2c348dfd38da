"""A framework's task with a DOCKER ContainerInfo (`mesos-execute --containerizer=docker`) on
corral's agent under a real Mesos master, run by the docker containerizer in the private dockerd."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.agent.agentkit import AgentProcess, free_port_block
from tests.mesos.mesoskit import Master, Missing, agent_work_dir, home, joined, until, updates
from tests.private_dockerd import BUSYBOX_IMAGE


@pytest.fixture
def master(tmp_path):
    try:
        mesos = home()
    except Missing as e:
        pytest.skip(str(e))
    (tmp_path / "master").mkdir()
    started = Master(mesos, tmp_path / "master", free_port_block(1))
    yield started
    started.stop()


def test_a_docker_task_runs_in_dockerd_and_reports_as_mesos(master, corral, docker_env):
    agent = AgentProcess([f"--master={master.address}", f"--work_dir={corral.work_dir}",
                          f"--runtime_dir={corral.runtime_dir}", f"--cgroups_root={corral.cgroups_root}",
                          "--containerizers=mesos,docker", f"--docker_socket={docker_env.dockerd.url}",
                          "--resources=cpus:2;mem:1024;disk:1024;ports:[31000-31009]"])
    try:
        until(lambda: joined(master, agent.port))
        done = master.execute("--name=docked", "--containerizer=docker", f"--docker_image={BUSYBOX_IMAGE}",
                              "--command=echo in docker $MESOS_TASK_ID; exit 4", "--resources=cpus:0.1;mem:32")
        assert updates(done.stdout) == ["TASK_STARTING", "TASK_RUNNING", "TASK_FAILED"], done.stdout
        assert "Command exited with status 4" in done.stdout
        (container,) = agent.state()["containers"]
        sandbox = Path(agent_work_dir(agent), "containers", container["container_id"]["value"])
        assert (sandbox / "stdout").read_text() == "in docker docked\n"
        status, _ = agent.call({"type": "REMOVE_CONTAINER",
                                "remove_container": {"container_id": container["container_id"]}})
        assert status == 200
    finally:
        agent.stop()
