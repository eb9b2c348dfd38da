"""gpu/nvidia: Mesos's rules for gpus at the agent's start, on any host; a container's GPUs
measured by an agent that did not launch it, on any host with NVML stood in for; a GPU given to
a container, isolated, named and measured, where NVML finds one (skipped elsewhere, with why)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest
from tests.agent.agentkit import AgentProcess, InProcessAgent, free_port_block
from tests.agent.conftest import agent_flags, port_block  # noqa: F401 - fixtures
from tests.gpu.gpukit import fake_nvml, nvml_gpus

from corral.types import TASK_KILLED
from corral.isolators.registry import DEFAULT_ISOLATION

ISOLATION = "--isolation=" + ",".join([*DEFAULT_ISOLATION, "gpu/nvidia"])


def agent_main(corral, *flags) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "corral.agent.main", f"--work_dir={corral.work_dir}",
                           f"--runtime_dir={corral.runtime_dir}", f"--cgroups_root={corral.cgroups_root}",
                           f"--port={free_port_block(1)}", *flags], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("flags, message", [
    (("--resources=gpus:1",), "gpus in --resources needs the gpu/nvidia isolator"),
    ((ISOLATION, "--nvidia_gpu_devices=[0]"), "--nvidia_gpu_devices needs gpus in --resources"),
    ((ISOLATION, "--resources=gpus:1"), "gpus in --resources needs --nvidia_gpu_devices"),
    ((ISOLATION, "--resources=gpus:1.5", "--nvidia_gpu_devices=[0]"), "gpus in --resources must be a whole number"),
    ((ISOLATION, "--resources=gpus:{a}", "--nvidia_gpu_devices=[0]"), "gpus in --resources must be a number"),
    ((ISOLATION, "--nvidia_gpu_devices=[0,0]"), "--nvidia_gpu_devices=[0,0]: names a GPU twice"),
])
def test_gpus_against_mesos_rules_stop_the_agent_with_one_line(corral, flags, message):
    result = agent_main(corral, *flags)
    assert (result.returncode, result.stderr.count("\n")) == (2, 1) and message in result.stderr, result.stderr


def test_without_nvidia_driver_gpu_nvidia_refuses_to_start(corral):
    found, reason = nvml_gpus()
    if found:
        pytest.skip("NVML finds GPUs here: this is the test of a host without them")
    result = agent_main(corral, ISOLATION)
    assert (result.returncode, result.stderr.count("\n")) == (2, 1), result.stderr
    assert result.stderr.startswith("corral agent: gpu/nvidia: no NVIDIA driver on this host") or \
        result.stderr.startswith("corral agent: gpu/nvidia needs nvidia-ml-py"), result.stderr


@pytest.fixture
def nvml_stand_in(monkeypatch):
    """NVML stood in for (gpukit.fake_nvml), in this process and the launch servers it forks."""
    from corral.isolators.gpu import nvml
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml())
    monkeypatch.setattr(nvml, "_initialised_in", None)


def test_a_containers_gpus_are_measured_by_the_agent_that_did_not_prepare_it(nvml_stand_in, agent_flags):
    """The launch server prepares a container (its own process), the agent measures it
    (GET_CONTAINERS), and a restarted agent measures what the last one launched: each finds
    the container's GPUs in what prepare() recorded, not in memory of its own. Ended and
    removed, the container's record is gone."""
    flags = agent_flags(ISOLATION)

    async def launched():
        async with InProcessAgent(flags) as a:
            assert (await a.call(launch_body("gpu", gpus=1, command="sleep 100")))[0] == 200
            given = int(a.agent.allocator.given_units("gpu")["gpus"][0])
            gpu = {"index": given, "utilization_percent": (given + 1) * 10, "memory_used_bytes": (given + 1) << 20,
                   "memory_total_bytes": 16 << 30}
            assert gpu_figures((await a.call(GET_CONTAINERS))[1], "gpu") == [gpu]
            return gpu

    async def restarted(gpu):                           # the container ran on meanwhile
        async with InProcessAgent(flags) as a:
            assert gpu_figures((await a.call(GET_CONTAINERS))[1], "gpu") == [gpu]
            await a.call(by_id("KILL_CONTAINER", "gpu"))
            await a.call(by_id("WAIT_CONTAINER", "gpu"))
            assert (await a.call(by_id("REMOVE_CONTAINER", "gpu")))[0] == 200
    asyncio.run(restarted(asyncio.run(launched())))
    assert not os.listdir(os.path.join(flags.runtime_dir, "isolators", "gpu-nvidia"))


GET_CONTAINERS = {"type": "GET_CONTAINERS", "get_containers": {"show_standalone": True}}


def gpu_figures(reply, container_id):
    """The container's GPU figures in a GET_CONTAINERS reply."""
    [container] = [c for c in reply["get_containers"]["containers"] if c["container_id"]["value"] == container_id]
    return container["resource_statistics"].get("gpus", "no GPU figures")


def by_id(kind, container_id, **extra):
    return {"type": kind, kind.lower(): {"container_id": {"value": container_id}, **extra}}


# -- on a host with a GPU --------------------------------------------------------------------

PROBE = """
exec > $MESOS_SANDBOX/out 2>&1
echo "visible=$NVIDIA_VISIBLE_DEVICES"
for node in /dev/nvidia[0-9]*; do
  if head -c 0 "$node" 2>/dev/null; then echo "$node: opened"; else echo "$node: refused"; fi
done
for node in /dev/nvidiactl /dev/nvidia-uvm; do [ -e $node ] && head -c 0 $node && echo "$node: opened"; done
echo done
exec sleep 600
"""


def call(agent, kind, container_id, **extra):
    return agent.call(by_id(kind, container_id, **extra))


def launch(agent, container_id, gpus=1, command=PROBE, container=None):
    return agent.call(launch_body(container_id, gpus, command, container))


def launch_body(container_id, gpus=1, command=PROBE, container=None):
    body = {"container_id": {"value": container_id}, "command": {"shell": True, "value": command},
            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                          {"name": "gpus", "type": "SCALAR", "scalar": {"value": gpus}}]}
    if container:
        body["container"] = container
    return {"type": "LAUNCH_CONTAINER", "launch_container": body}


def report(corral, container_id, timeout=60) -> str:
    path = os.path.join(corral.work_dir, "containers", container_id, "out")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path) and open(path).read().endswith("done\n"):
            return open(path).read()
        time.sleep(0.05)
    raise AssertionError(f"{container_id}: {open(path).read() if os.path.exists(path) else 'no report'}")


@pytest.fixture
def start_agent(corral):
    started = []

    def start(*flags) -> AgentProcess:
        base = free_port_block(10)
        agent = AgentProcess([f"--work_dir={corral.work_dir}", f"--runtime_dir={corral.runtime_dir}",
                              f"--cgroups_root={corral.cgroups_root}", ISOLATION,
                              f"--resources=cpus:4;mem:2048;disk:1024;ports:[{base}-{base + 9}]", *flags])
        started.append(agent)
        return agent
    yield start
    for agent in started:
        if agent.proc.poll() is None:
            agent.stop()


def test_a_container_uses_its_gpu_and_no_other_and_keeps_it_across_a_restart(gpus, start_agent, corral):
    agent = start_agent()
    with urllib.request.urlopen(f"http://127.0.0.1:{agent.port}/state", timeout=30) as r:
        assert json.loads(r.read())["resources"]["gpus"] == float(len(gpus))
    assert launch(agent, "first")[0] == 200
    out = report(corral, "first")
    assert "visible=0\n" in out
    assert f"/dev/nvidia{gpus[0].minor}: opened\n" in out
    for other in gpus[1:]:
        assert f"/dev/nvidia{other.minor}: refused\n" in out         # the devices cgroup: EPERM
    assert "/dev/nvidiactl: opened\n" in out
    metrics = {m["name"]: m["value"] for m in agent.call({"type": "GET_METRICS"})[1]["get_metrics"]["metrics"]}
    assert metrics["slave/gpus_used"] == 1 and "corral/gpus/0/memory_used_bytes" in metrics
    assert [gpu["index"] for gpu in gpu_figures(agent.call(GET_CONTAINERS)[1], "first")] == [0]
    status, body = launch(agent, "too-many", gpus=len(gpus))
    assert status == 409 and "gpus: asked" in body, body

    agent.sigkill()
    agent = start_agent()
    assert [gpu["index"] for gpu in gpu_figures(agent.call(GET_CONTAINERS)[1], "first")] == [0]   # recovered
    if len(gpus) > 1:
        assert launch(agent, "second")[0] == 200
        assert "visible=1\n" in report(corral, "second")     # not GPU 0 again
    else:
        assert launch(agent, "second")[0] == 409
    for container_id in ("first", "second"):
        if call(agent, "KILL_CONTAINER", container_id)[0] == 200:
            assert call(agent, "WAIT_CONTAINER", container_id)[1]["wait_container"]["state"] == TASK_KILLED
            assert call(agent, "REMOVE_CONTAINER", container_id)[0] == 200


def test_an_image_container_gets_the_driver_volume(gpus, start_agent, corral, tmp_path):
    from corral.provisioner.localimage import write_busybox_tarball
    write_busybox_tarball(str(tmp_path / "images"))
    agent = start_agent("--image_providers=docker", f"--docker_registry={tmp_path / 'images'}", "--nvidia_volumes=all")
    image = {"type": "MESOS", "mesos": {"image": {"type": "DOCKER", "docker": {"name": "busybox"}}}}
    # busybox has no C library for nvidia-smi to run on: the volume's contents are checked instead.
    command = ("exec > $MESOS_SANDBOX/out 2>&1; echo PATH=$PATH; echo LD=$LD_LIBRARY_PATH; "
               "ls /usr/local/nvidia/bin /usr/local/nvidia/lib64; touch /usr/local/nvidia/x || echo read-only; "
               "echo done")
    assert launch(agent, "smi", command=command, container=image)[0] == 200
    out = report(corral, "smi")
    assert ":/usr/local/nvidia/bin\n" in out and "LD=/usr/local/nvidia/lib64" in out
    assert "nvidia-smi\n" in out and "libnvidia-ml.so.1\n" in out and "libcuda.so.1\n" in out, out
    assert "read-only\n" in out
    call(agent, "WAIT_CONTAINER", "smi")
    assert call(agent, "REMOVE_CONTAINER", "smi")[0] == 200


def test_the_docker_containerizer_asks_dockerd_for_the_given_gpus():
    """What dockerd receives (NVIDIA's container toolkit needs a GPU host to take it)."""
    from corral.containerizers.docker.create import gpu_requests
    from corral.types import ContainerConfig
    config = ContainerConfig.from_dict({"argv": ["nvidia-smi"], "resources": {"custom": {"gpus": ["1", "3"]}}})
    assert gpu_requests(config) == {"DeviceRequests": [{"Driver": "nvidia", "DeviceIDs": ["1", "3"],
                                                        "Capabilities": [["gpu"]]}]}
    assert gpu_requests(ContainerConfig.from_dict({"argv": ["true"]})) == {}
