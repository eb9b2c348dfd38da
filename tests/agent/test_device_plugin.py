"""A custom device resource isolated by a plug-in that another distribution ships.

examples/device-isolator is installed with pip (into a directory of the test's own, on
PYTHONPATH: nothing is left in the venv); its `devices/config` isolator maps the agent's
`fpgas:{fpga0,fpga1}` to two character devices that the test makes with mknod, with a major of
the experimental range 240-254 that no driver has: opening one a container may use fails with
ENXIO (the kernel finds no driver), opening the other with EPERM (the devices cgroup refuses).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.agent.agentkit import AgentProcess, free_port_block
from corral.types import TASK_KILLED

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "device-isolator")


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    """The example installed with pip from a copy (a build writes into its source tree)."""
    source = tmp_path_factory.mktemp("device-isolator-src") / "device-isolator"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = tmp_path_factory.mktemp("device-isolator-site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "--target", str(site), str(source)], check=True, capture_output=True)
    return site


def free_char_major() -> int:
    """A major of the experimental range 240-254 that no character driver has on this host."""
    with open("/proc/devices") as f:
        text = f.read().split("Block devices:")[0]
    taken = {int(line.split()[0]) for line in text.splitlines() if line.strip()[:1].isdigit()}
    free = [major for major in range(240, 255) if major not in taken]
    if not free:
        pytest.skip("every experimental character major (240-254) has a driver on this host")
    return free[0]


@pytest.fixture
def fpgas(tmp_path, plugin_site, monkeypatch):
    """Two fpga nodes and the plug-in's config; the agent's environment set to find both."""
    major = free_char_major()
    dev = tmp_path / "dev"
    dev.mkdir()
    for minor in (0, 1):
        os.mknod(dev / f"fpga{minor}", 0o666 | 0o020000, os.makedev(major, minor))
    config = tmp_path / "devices.json"
    config.write_text(json.dumps({"fpgas": {"env": "FPGA_DEVICES", "devices": {
        f"fpga{minor}": {"host": str(dev / f"fpga{minor}"), "container": f"/dev/fpga{minor}"} for minor in (0, 1)}}}))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(plugin_site), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("CORRAL_DEVICES_CONFIG", str(config))
    return major


@pytest.fixture
def start_agent(corral, tmp_path):
    from corral.provisioner.localimage import write_busybox_tarball
    write_busybox_tarball(str(tmp_path / "images"))
    base = free_port_block(10)
    started = []

    def start(resources="fpgas:{fpga0,fpga1}", isolation=None) -> AgentProcess:
        from corral.isolators.registry import DEFAULT_ISOLATION
        process = AgentProcess([
            f"--work_dir={corral.work_dir}", f"--runtime_dir={corral.runtime_dir}",
            f"--cgroups_root={corral.cgroups_root}", "--image_providers=docker",
            f"--docker_registry={tmp_path / 'images'}",
            f"--isolation={isolation or ','.join([*DEFAULT_ISOLATION, 'devices/config'])}",
            f"--resources=cpus:4;mem:2048;disk:1024;ports:[{base}-{base + 9}];{resources}"])
        started.append(process)
        return process
    yield start
    for process in started:
        if process.proc.poll() is None:
            process.stop()


IMAGE = {"type": "MESOS", "mesos": {"image": {"type": "DOCKER", "docker": {"name": "busybox"}}}}

# What the container reports: the names it was given, then its tries to open both nodes (the one
# it was not given made by its own mknod: the node is allowed, its use is not).
PROBE = """
exec > $MESOS_SANDBOX/out
echo "given=$FPGA_DEVICES"
for n in 0 1; do
  [ -e /dev/fpga$n ] || { echo "fpga$n: no node"; mknod /dev/fpga$n c {major} $n; }
  cat /dev/fpga$n 2>&1 </dev/null | sed "s/^/fpga$n: /"
done
echo done
exec sleep 600
"""


def launch_fpga(agent, container_id, major, fpgas):
    value = {"name": "fpgas", "type": "SCALAR", "scalar": {"value": fpgas}} if isinstance(fpgas, int) else \
        {"name": "fpgas", "type": "SET", "set": {"item": fpgas}}
    return agent.call({"type": "LAUNCH_CONTAINER", "launch_container": {
        "container_id": {"value": container_id}, "container": IMAGE,
        "command": {"shell": True, "value": PROBE.replace("{major}", str(major))},
        "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}}, value]}})


def report(corral, container_id, timeout=30) -> str:
    path = os.path.join(corral.work_dir, "containers", container_id, "out")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path) and open(path).read().endswith("done\n"):
            return open(path).read()
        time.sleep(0.05)
    raise AssertionError(f"{container_id} reported nothing: {open(path).read() if os.path.exists(path) else ''}")


def state(agent) -> dict:
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{agent.port}/state", timeout=30) as r:
        return json.loads(r.read())


def held(agent) -> dict[str, list[str]]:
    """container id -> the fpgas it holds, as the agent's /state says."""
    out = {}
    for container in agent.state()["containers"]:
        for resource in container.get("resources", []):
            if resource["name"] == "fpgas":
                out[container["container_id"]["value"]] = resource["set"]["item"]
    return out


def units(agent) -> dict[str, dict]:
    """container id -> the whole units it holds, as the agent's /state says."""
    return {c["container_id"]["value"]: c["units"] for c in agent.state()["containers"] if c.get("units")}


def kill_and_remove(agent, container_id):
    assert agent.call({"type": "KILL_CONTAINER", "kill_container": {"container_id": {"value": container_id}}})[0] == 200
    status, waited = agent.call({"type": "WAIT_CONTAINER", "wait_container": {"container_id": {"value": container_id}}})
    assert waited["wait_container"]["state"] == TASK_KILLED, waited
    assert agent.call({"type": "REMOVE_CONTAINER",
                       "remove_container": {"container_id": {"value": container_id}}})[0] == 200


def test_a_container_uses_the_fpga_it_was_given_and_no_other(fpgas, start_agent, corral):
    agent = start_agent()
    assert state(agent)["resources"]["fpgas"] == "{fpga0,fpga1}"
    assert launch_fpga(agent, "first", fpgas, 1)[0] == 200
    out = report(corral, "first")
    assert "given=fpga0\n" in out
    assert "fpga0: cat: can't open '/dev/fpga0': No such device or address\n" in out    # allowed: no driver
    assert "fpga1: no node\n" in out
    assert "fpga1: cat: can't open '/dev/fpga1': Operation not permitted\n" in out      # the devices cgroup

    assert launch_fpga(agent, "second", fpgas, ["fpga1"])[0] == 200
    out = report(corral, "second")
    assert "given=fpga1\n" in out
    assert "fpga1: cat: can't open '/dev/fpga1': No such device or address\n" in out
    assert "fpga0: cat: can't open '/dev/fpga0': Operation not permitted\n" in out
    assert held(agent) == {"first": ["fpga0"], "second": ["fpga1"]}

    status, body = launch_fpga(agent, "third", fpgas, 1)
    assert (status, body.strip()) == (409, "not enough free resources for third: fpgas: asked 1, none free")
    status, body = launch_fpga(agent, "fourth", fpgas, ["fpga0"])
    assert (status, body.strip()) == (409, "not enough free resources for fourth: fpgas: asked {fpga0}, none free")
    metrics = agent.call({"type": "GET_METRICS"})[1]
    gauges = {m["name"]: m["value"] for m in metrics["get_metrics"]["metrics"]}
    assert (gauges["slave/fpgas_total"], gauges["slave/fpgas_used"]) == (2, 2)

    # A SIGKILL of the agent: the next one knows who holds which, and gives neither out again.
    agent.sigkill()
    agent = start_agent()
    assert held(agent) == {"first": ["fpga0"], "second": ["fpga1"]}
    assert launch_fpga(agent, "third", fpgas, 1)[0] == 409
    kill_and_remove(agent, "first")
    assert launch_fpga(agent, "third", fpgas, 1)[0] == 200
    assert "given=fpga0\n" in report(corral, "third")
    for container_id in ("second", "third"):
        kill_and_remove(agent, container_id)


def test_whole_units_of_a_scalar_resource_are_given_by_name_and_kept_across_a_restart(fpgas, start_agent, corral):
    """fpgas:2 (as gpus:2): a container asking fpgas:1 is given one by name, which the agent
    checkpoints apart from the scalar it accounts."""
    agent = start_agent("fpgas:2")
    assert state(agent)["resources"]["fpgas"] == 2.0
    assert launch_fpga(agent, "first", fpgas, 1)[0] == 200
    out = report(corral, "first")
    assert "given=fpga0\n" in out and "fpga0: cat: can't open '/dev/fpga0': No such device or address\n" in out
    assert "fpga1: cat: can't open '/dev/fpga1': Operation not permitted\n" in out
    assert units(agent) == {"first": {"fpgas": ["fpga0"]}}

    agent.sigkill()
    agent = start_agent("fpgas:2")
    assert units(agent) == {"first": {"fpgas": ["fpga0"]}}
    assert launch_fpga(agent, "second", fpgas, 1)[0] == 200
    assert "given=fpga1\n" in report(corral, "second")            # not fpga0 again
    status, body = launch_fpga(agent, "third", fpgas, 1)
    assert (status, body.strip()) == (409, "not enough free resources for third: fpgas: asked 1, none free")
    for container_id in ("first", "second"):
        kill_and_remove(agent, container_id)


@pytest.mark.parametrize("resources, message", [
    ("fpgas:{fpga0,fpga7}", "devices/config: fpgas {fpga7} in --resources has no device in the config"),
    ("fpgas:3", "devices/config found 2 fpgas, and --resources says 3"),
    ("fpgas:[1-2]", "devices/config manages fpgas: give it in --resources, as fpgas:{fpga0,fpga1} or fpgas:2"),
    ("fpgas:{fpga0};gpus:1", "gpus in --resources needs the gpu/nvidia isolator"),
])
def test_resources_the_isolators_cannot_back_stop_the_agent_with_one_line(fpgas, corral, resources, message):
    from corral.isolators.registry import DEFAULT_ISOLATION
    result = subprocess.run([sys.executable, "-m", "corral.agent.main", f"--work_dir={corral.work_dir}",
                             f"--runtime_dir={corral.runtime_dir}", f"--cgroups_root={corral.cgroups_root}",
                             f"--isolation={','.join([*DEFAULT_ISOLATION, 'devices/config'])}",
                             f"--resources={resources}", f"--port={free_port_block(1)}"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and message in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_a_custom_resource_no_isolator_manages_is_offered_and_accounted_only(start_agent, corral):
    from corral.isolators.registry import DEFAULT_ISOLATION
    agent = start_agent("gpgpus:1;hugepages:64;zones:{a,b}", ",".join(DEFAULT_ISOLATION))

    def ask(container_id, *resources):
        return agent.call({"type": "LAUNCH_CONTAINER", "launch_container": {
            "container_id": {"value": container_id}, "command": {"shell": True, "value": "exec sleep 600"},
            "resources": list(resources)}})
    scalar = lambda name, value: {"name": name, "type": "SCALAR", "scalar": {"value": value}}   # noqa: E731
    assert ask("a", scalar("gpgpus", 1), scalar("hugepages", 48), scalar("zones", 1))[0] == 200
    status, body = ask("b", scalar("hugepages", 32))
    assert (status, body.strip()) == (409, "not enough free resources for b: hugepages: asked 32, 16 free")
    now = state(agent)
    assert {k: now["resources"][k] for k in ("gpgpus", "hugepages", "zones")} == {
        "gpgpus": 1.0, "hugepages": 64.0, "zones": "{a,b}"}
    assert {k: now["used_resources"].get(k) for k in ("gpgpus", "hugepages", "zones")} == {
        "gpgpus": 1.0, "hugepages": 48.0, "zones": "{a}"}
    kill_and_remove(agent, "a")
