"""The Docker containerizer against a real (private) dockerd."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from corral.containerizers.docker import (LABEL_ID, LABEL_OWNER, SANDBOX, DockerUnavailable, EngineError, NotFound,
                                   SyncDockerContainerizer)
from corral.types import (LAUNCHED, NOT_SUPPORTED, REASON_CONTAINER_LIMITATION_MEMORY, STATISTICS_FIELDS, CorralError,
                          TASK_FAILED, TASK_FINISHED, TASK_KILLED, TASK_LOST, ContainerExists, NoSuchContainer,
                          Resources)

# Each test runs over both transports: the docker SDK (the agent's) and plain HTTP (the CLI's).
pytestmark = pytest.mark.parametrize("docker_env", ["sdk", "socket"], indirect=True)


def test_launch_exit_code_and_output_in_the_sandbox(docker_env):
    async def main():
        dc = docker_env.async_()
        config = docker_env.config("sh", "-c", 'echo "out $MESOS_SANDBOX $(pwd) $GREETING"; seq 20000; '
                                   'echo err >&2; exit 3', env={"GREETING": "hi"})
        assert await dc.launch("c1", config) == LAUNCHED
        termination = await dc.wait("c1")
        assert (termination.state, termination.exit_code) == (TASK_FAILED, 3)
        # The end is reported once the sandbox has the whole output, not before.
        sandbox = (await dc.status("c1"))["sandbox"]
        with open(os.path.join(sandbox, "stdout")) as out, open(os.path.join(sandbox, "stderr")) as err:
            numbers = "".join(f"{n}\n" for n in range(1, 20001))
            assert out.read() == f"out {SANDBOX} {SANDBOX} hi\n{numbers}" and err.read() == "err\n"
        status = await dc.status("c1")
        assert status["state"] == "EXITED" and status["termination"]["exit_code"] == 3
        assert (await dc.destroy("c1")).exit_code == 3
        assert await dc.containers() == []
    asyncio.run(main())


def test_the_output_copy_never_writes_through_a_link_the_task_put_in_the_sandbox(docker_env, tmp_path):
    """The agent copies dockerd's record of the output into the sandbox, as root: a task that put a
    link to a host file there (its path as the host sees it) must not have that file overwritten."""
    from corral.files import UnsafeFile
    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    dc = docker_env.sync()
    dc.launch("planted", docker_env.config("sh", "-c", f"ln -s {victim} $MESOS_SANDBOX/stdout; echo payload"))
    assert dc.wait("planted").state == TASK_FINISHED
    with pytest.raises(UnsafeFile, match="stdout is not a regular file"):
        dc.copy_output("planted")
    assert victim.read_text() == "untouched\n"
    dc.destroy("planted", remove_sandbox=True)


def test_a_signal_to_a_container_that_had_ended_does_not_make_it_killed(docker_env):
    dc = docker_env.sync()
    dc.launch("ended", docker_env.config("true"))
    docker_env.dockerd.docker("wait", "corral-ended")     # ended, as dockerd sees it; no verdict read yet
    for sig in (signal.SIGTERM, signal.SIGKILL):
        dc.kill("ended", sig)
    termination = dc.wait("ended")
    assert (termination.state, termination.message) == (TASK_FINISHED, "Command exited with status 0")
    dc.destroy("ended", remove_sandbox=True)


def test_finished_and_the_container_as_dockerd_sees_it(docker_env):
    dc = docker_env.sync(cgroups_enable_cfs=True)
    dc.launch("c2", docker_env.config("true", resources=Resources(cpus=0.5, mem_mb=64)))
    assert dc.wait("c2").state == TASK_FINISHED
    info = docker_env.dockerd.docker("inspect", "corral-c2")
    container = json.loads(info.stdout)[0]
    host = container["HostConfig"]
    assert (host["CpuShares"], host["CpuQuota"], host["CpuPeriod"]) == (512, 50_000, 100_000)
    assert host["Memory"] == host["MemorySwap"] == 64 * 1024 * 1024
    assert host["NetworkMode"] == "host"
    assert f"{dc.files('c2').sandbox}:{SANDBOX}:rw" in host["Binds"]
    assert container["Config"]["Labels"][LABEL_ID] == "c2"
    assert container["Config"]["Env"].count(f"MESOS_SANDBOX={SANDBOX}") == 1
    dc.destroy("c2", remove_sandbox=True)
    assert docker_env.dockerd.docker("inspect", "corral-c2").returncode != 0
    assert not os.path.exists(os.path.join(dc.state_dir, "containers", "c2"))


def test_a_log_cap_goes_to_dockerd_and_bounds_the_sandbox_copy(docker_env):
    async def main():
        dc = docker_env.async_()
        config = docker_env.config("seq", "1", "100000", log_max_size=16384, log_max_files=2)
        assert await dc.launch("capped", config) == LAUNCHED
        assert (await dc.wait("capped")).state == TASK_FINISHED
        container = json.loads(docker_env.dockerd.docker("inspect", "corral-capped").stdout)[0]
        assert container["HostConfig"]["LogConfig"] == {"Type": "json-file",
                                                       "Config": {"max-size": "16384", "max-file": "2"}}
        sandbox = (await dc.status("capped"))["sandbox"]
        # The copy has what dockerd had when it read (at most its two files): one or two files of ours.
        names = sorted(os.listdir(sandbox))
        assert names in (["stderr", "stdout"], ["stderr", "stdout", "stdout.1"]), names
        assert all(os.path.getsize(os.path.join(sandbox, name)) <= 16384 for name in names)
        logged = b"".join(chunk for stream, chunk in dc.sync.output("capped") if stream == 1)
        assert logged.endswith(b"99999\n100000\n") and len(logged) < 100000    # what dockerd kept
        await dc.destroy("capped", remove_sandbox=True)
    asyncio.run(main())


def test_cpu_shares_have_a_floor_and_no_quota_without_cfs(docker_env):
    dc = docker_env.sync()
    dc.launch("c3", docker_env.config("true", resources=Resources(cpus=0.001)))
    dc.wait("c3")
    host = json.loads(docker_env.dockerd.docker("inspect", "corral-c3").stdout)[0]["HostConfig"]
    assert (host["CpuShares"], host["CpuQuota"]) == (2, 0)
    dc.destroy("c3")


def test_only_docker_images_that_asked_for_docker(docker_env):
    shared = docker_env.sync(only=False)
    assert shared.launch("n1", docker_env.config("true")) == NOT_SUPPORTED                 # did not ask
    assert shared.launch("n2", docker_env.config("true", image=None, containerizer="docker")) == NOT_SUPPORTED
    assert shared.launch("n3", docker_env.config("true", containerizer="mesos")) == NOT_SUPPORTED
    appc = {"type": "APPC", "name": "x"}
    assert shared.launch("n4", docker_env.config("true", image=appc, containerizer="docker")) == NOT_SUPPORTED
    assert shared.containers() == []
    assert shared.launch("n5", docker_env.config("true", containerizer="docker")) == LAUNCHED
    alone = docker_env.sync(only=True)
    assert alone.launch("n6", docker_env.config("true")) == LAUNCHED
    with pytest.raises(ContainerExists):
        alone.launch("n6", docker_env.config("true"))
    for cid in ("n5", "n6"):
        alone.destroy(cid)
    with pytest.raises(NoSuchContainer):
        alone.wait("n6")


def test_oom_is_a_memory_limitation(docker_env):
    dc = docker_env.sync()
    dc.launch("oom", docker_env.config("sh", "-c", "x=a; while true; do x=$x$x; done",
                                       resources=Resources(mem_mb=32)))
    termination = dc.wait("oom")
    assert termination.state == TASK_FAILED
    assert termination.reason == REASON_CONTAINER_LIMITATION_MEMORY
    dc.destroy("oom")


def test_kill_then_destroy(docker_env):
    dc = docker_env.sync()
    dc.launch("k1", docker_env.config("sleep", "600"))
    assert dc.wait("k1", timeout=0.5) is None
    dc.kill("k1", signal.SIGTERM)           # docker-init passes it on: the task is not pid 1
    termination = dc.wait("k1")
    assert (termination.state, termination.shell_exit_code()) == (TASK_KILLED, 128 + signal.SIGTERM)
    dc.kill("k1", signal.SIGTERM)           # already ended: nothing to do, no error
    dc.launch("k2", docker_env.config("sh", "-c", "trap '' TERM; sleep 600"))
    started = time.monotonic()
    termination = dc.destroy("k2")
    assert termination.state == TASK_KILLED and time.monotonic() - started < 10
    assert dc.containers() == ["k1"]
    dc.destroy("k1")


def test_usage_and_update(docker_env):
    dc = docker_env.sync()
    dc.launch("u1", docker_env.config("sh", "-c", "sleep 600 & sleep 600", resources=Resources(cpus=0.5, mem_mb=64)))
    stats = dc.usage("u1")
    assert set(stats) == set(STATISTICS_FIELDS)
    assert stats["processes"] == 3          # docker-init and the two sleeps (sh execs the last)
    assert stats["cpus_limit"] == 0.5 and stats["mem_limit_bytes"] == 64 * 1024 * 1024
    assert 0 < stats["mem_total_bytes"] < 64 * 1024 * 1024
    dc.update("u1", Resources(cpus=2, mem_mb=128))
    stats = dc.usage("u1")
    assert stats["cpus_limit"] == 2 and stats["mem_limit_bytes"] == 128 * 1024 * 1024
    dc.destroy("u1")


def test_volumes(docker_env, tmp_path):
    host = tmp_path / "data"
    host.mkdir()
    (host / "in").write_text("from the host\n")
    dc = docker_env.sync()
    config = docker_env.config("sh", "-c", "cat /data/in > /mnt/mesos/sandbox/copy; echo scratch > /scratch/f; "
                                           "echo no > /data/in || exit 7",
                               volumes=[f"{host}:/data:ro", "scratch:/scratch"])
    dc.launch("v1", config)
    assert dc.wait("v1").exit_code == 7            # read-only
    sandbox = dc.files("v1").sandbox
    assert open(os.path.join(sandbox, "copy")).read() == "from the host\n"
    assert open(os.path.join(sandbox, "scratch", "f")).read() == "scratch\n"
    dc.destroy("v1")
    with pytest.raises(Exception, match="invalid volume"):
        dc.launch("v2", docker_env.config("true", volumes=["relative-only"]))
    assert dc.containers() == []


def test_bridge_network_publishes_ports(docker_env):
    net = f"corral-test-{os.urandom(3).hex()}"
    bridge = f"crl{os.urandom(3).hex()}"          # an interface name of our own, removed with the network
    created = docker_env.dockerd.docker("network", "create", "--driver", "bridge",
                                        "-o", f"com.docker.network.bridge.name={bridge}", net)
    assert created.returncode == 0, created.stderr
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        dc = docker_env.sync()
        with pytest.raises(Exception, match="off the host network"):
            dc.launch("p0", docker_env.config("true", ports=[f"{port}:80"]))
        dc.launch("p1", docker_env.config("sh", "-c", "echo hello > index.html; exec httpd -f -p 80",
                                          network=net, ports=[f"{port}:80"]))
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=2).read()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            assert body == b"hello\n"
        finally:
            dc.destroy("p1")
    finally:
        docker_env.dockerd.docker("network", "rm", net)


RECOVER_CHILD = """
import sys
from corral.containerizers.docker import SyncDockerContainerizer
from corral.types import ContainerConfig
work, run, url, image = sys.argv[1:5]
dc = SyncDockerContainerizer(work, run, socket=url, only=True)
for cid, argv in (("running", ["sleep", "600"]), ("exited", ["sh", "-c", "exit 5"]), ("forgotten", ["sleep", "600"])):
    dc.launch(cid, ContainerConfig(argv=argv, image={"type": "DOCKER", "name": image}))
"""


def test_recovery_after_corral_is_gone_and_orphans(docker_env):
    d = docker_env.dockerd
    subprocess.run([sys.executable, "-c", RECOVER_CHILD, docker_env.work_dir, docker_env.runtime_dir, d.url,
                    docker_env.image["name"]], check=True, timeout=60)
    # Not corral's: a look-alike name without our labels, and a container of another corral.
    foreign = d.docker("run", "-d", "--name", "corral-foreign", docker_env.image["name"], "sleep", "600")
    other = d.docker("run", "-d", "--name", "corral-other", "--label", f"{LABEL_ID}=other",
                     "--label", f"{LABEL_OWNER}=/elsewhere", docker_env.image["name"], "sleep", "600")
    assert foreign.returncode == other.returncode == 0
    try:
        dc = docker_env.sync()
        subprocess.run(["rm", "-rf", os.path.join(dc.state_dir, "containers", "forgotten")], check=True)
        # A launch that died between dockerd's create and start.
        assert d.docker("create", "--name", "corral-halfway", "--label", f"{LABEL_ID}=halfway",
                        "--label", f"{LABEL_OWNER}={dc.owner}", docker_env.image["name"], "true").returncode == 0
        os.makedirs(os.path.join(dc.state_dir, "containers", "halfway"))
        with open(os.path.join(dc.state_dir, "containers", "halfway", "config.json"), "w") as f:
            json.dump({"config": docker_env.config("true").to_dict(), "docker_id": None}, f)

        async def main():
            adc = docker_env.async_()
            assert sorted(await adc.recover()) == ["exited", "running"]
            assert (await adc.wait("exited")).exit_code == 5
            assert (await adc.status("running"))["state"] == "RUNNING"
            await adc.kill("running", signal.SIGKILL)
            assert (await adc.wait("running")).state == TASK_KILLED
            for cid in ("exited", "running"):
                await adc.destroy(cid)
        asyncio.run(main())
        names = d.docker("ps", "-a", "--format", "{{.Names}}").stdout.split()
        assert sorted(names) == ["corral-foreign", "corral-other"]
    finally:
        d.docker("rm", "-f", "corral-foreign", "corral-other", "corral-halfway", "corral-forgotten")


def test_kill_orphans_off_leaves_them(docker_env):
    dc = docker_env.sync(kill_orphans=False)
    dc.launch("o1", docker_env.config("sleep", "600"))
    subprocess.run(["rm", "-rf", os.path.join(dc.state_dir, "containers", "o1")], check=True)
    assert dc.recover() == []
    assert [o["Names"] for o in dc.orphans([])] == [["/corral-o1"]]
    assert docker_env.sync().recover() == []        # the default removes it
    assert docker_env.sync().orphans([]) == []


def test_container_removed_behind_our_back_is_lost(docker_env):
    dc = docker_env.sync()
    dc.launch("gone", docker_env.config("sleep", "600"))
    docker_env.dockerd.docker("rm", "-f", "corral-gone")
    assert dc.wait("gone").state == TASK_LOST
    dc.destroy("gone")


def test_dockerd_down_or_silent_is_a_clear_error(docker_env, tmp_path):
    down = SyncDockerContainerizer(docker_env.work_dir, docker_env.runtime_dir,
                                   socket=f"unix://{tmp_path}/nobody.sock", only=True, sdk=docker_env.sdk)
    with pytest.raises(DockerUnavailable, match=r"dockerd at unix://.*nobody.sock is not reachable \(No such file"):
        down.launch("d1", docker_env.config("true"))
    assert down.containers() == []                  # nothing half-made is left
    # A tcp:// host goes through the SDK whatever the transport asked for: refused is said so.
    refused = SyncDockerContainerizer(docker_env.work_dir, docker_env.runtime_dir, socket="tcp://127.0.0.1:1",
                                      only=True, sdk=docker_env.sdk)
    with pytest.raises(DockerUnavailable, match=r"^dockerd at tcp://127.0.0.1:1 is not reachable \(Connection refused\)$"):
        refused.launch("d3", docker_env.config("true"))
    assert refused.containers() == []
    # A socket that accepts and never answers: a hung dockerd.
    path = str(tmp_path / "silent.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(8)
    silent = SyncDockerContainerizer(docker_env.work_dir, docker_env.runtime_dir, socket=f"unix://{path}",
                                     only=True, timeout=0.5, sdk=docker_env.sdk)
    try:
        with pytest.raises(DockerUnavailable, match=r"did not answer within 0.5s"):
            silent.launch("d2", docker_env.config("true"))
    finally:
        server.close()
    assert silent.containers() == []


def test_engine_answers_as_corral_errors(docker_env, tmp_path):
    """dockerd's error answers are one line naming dockerd; a socket that does not speak HTTP is
    dockerd unavailable; a query with odd characters reaches dockerd intact."""
    engine = docker_env.sync().engine
    assert engine.inspect("corral-nobody") is None
    gone = r"^dockerd at unix://\S+: Cannot kill container: corral-nobody: No such container: corral-nobody$"
    with pytest.raises(NotFound, match=gone):
        engine.kill("corral-nobody", signal.SIGTERM)
    with pytest.raises(EngineError, match=r"^dockerd at unix://\S+: .*invalid reference format"):
        engine.create("corral-bad", {"Image": "Not A/Valid:Image:Name"})
    label = f"io.corral.test=a value/with spaces & ünïcode {os.urandom(2).hex()}"
    created = engine.create("corral-labelled", {"Image": docker_env.image["name"], "Cmd": ["true"],
                                                 "Labels": dict([label.split("=", 1)])})
    try:
        assert [c["Id"] for c in engine.containers([label])] == [created]
    finally:
        engine.remove(created)
    engine.remove(created)                              # gone already: fine
    path = str(tmp_path / "chatty.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(1)

    def answer_garbage():
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"hello, I am not dockerd\n")
    chatty = threading.Thread(target=answer_garbage)
    chatty.start()
    try:
        not_http = SyncDockerContainerizer(docker_env.work_dir, docker_env.runtime_dir, socket=f"unix://{path}",
                                           only=True, timeout=5, sdk=docker_env.sdk)
        with pytest.raises(DockerUnavailable):
            not_http.engine.inspect("corral-x")
    finally:
        chatty.join()
        server.close()


def test_wait_outlives_a_dockerd_restart(docker_env):
    """dockerd stops (taking its containers with it) and comes back: the waiter re-reads the state."""
    d = docker_env.dockerd

    async def main():
        dc = docker_env.async_()
        dc.RETRY_INTERVAL = 0.2
        await dc.launch("r1", docker_env.config("sleep", "600"))
        waiter = asyncio.ensure_future(dc.wait("r1"))
        await asyncio.sleep(0.3)
        await asyncio.to_thread(d.stop)
        with pytest.raises(DockerUnavailable):
            await dc.usage("r1")
        assert not waiter.done()
        await asyncio.to_thread(d.start)
        termination = await asyncio.wait_for(waiter, 30)
        assert termination.state == TASK_FAILED and termination.exit_code in (128 + 15, 128 + 9)
        await dc.destroy("r1")
        dc.close()
    asyncio.run(main())


def test_cli_run_with_the_docker_containerizer(docker_env):
    corral = os.path.join(os.path.dirname(sys.executable), "corral")
    env = dict(os.environ, CORRAL_WORK_DIR=docker_env.work_dir, CORRAL_RUNTIME_DIR=docker_env.runtime_dir,
               CORRAL_CONTAINERIZERS="docker", DOCKER_HOST=docker_env.dockerd.url)

    def cli(*args):
        return subprocess.run([corral, *args], env=env, capture_output=True, text=True, timeout=60)
    image = docker_env.image["name"]
    ran = cli("run", "--containerizer", "docker", "--image", image, "--mem", "64M", "--",
              "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (ran.returncode, ran.stdout, ran.stderr) == (3, "out\n", "err\n")
    many = cli("run", "--containerizer", "docker", "--image", image, "--", "seq", "30000")
    assert many.returncode == 0 and many.stdout == "".join(f"{n}\n" for n in range(1, 30001))     # all of it
    cid = cli("run", "--image", image, "--detach", "--", "sh", "-c", "echo up; exec sleep 600").stdout.strip()

    def by_id(*args):       # no containerizer named: the container's files say which has it
        return subprocess.run([corral, *args], env={k: v for k, v in env.items() if k != "CORRAL_CONTAINERIZERS"},
                              capture_output=True, text=True, timeout=60)
    assert by_id("usage", "--json", cid).returncode == 0
    listed = json.loads(by_id("ps", "--json").stdout)
    assert [(row["container_id"], row["containerizer"], row["state"]) for row in listed] == [(cid, "docker", "RUNNING")]
    table = by_id("ps").stdout.splitlines()
    assert table[0].split()[:4] == ["CONTAINER", "ID", "CONTAINERIZER", "STATE"] and table[1].split()[1] == "docker"
    assert by_id("logs", cid).stdout == "up\n"
    assert by_id("kill", cid).returncode == 0
    assert by_id("wait", cid).stdout == f"{128 + signal.SIGTERM}\n"
    assert by_id("destroy", cid).returncode == 0
    piped = subprocess.run(f"{corral} run --image {image} -- yes | head -1", shell=True, env=env,
                           capture_output=True, text=True, timeout=60)
    assert piped.stdout == "y\n"                        # a closed stdout still removes the container
    refused = cli("run", "--", "true")                  # no image: docker does not take it
    assert refused.returncode == 2 and "no containerizer of docker takes" in refused.stderr
    assert docker_env.sync().containers() == []


def test_no_command_runs_the_images_own(docker_env):
    dc = docker_env.sync()
    dc.launch("own", docker_env.config())            # the busybox image's Cmd is ["sh"]; stdin is empty
    assert dc.wait("own").exit_code == 0
    config = json.loads(docker_env.dockerd.docker("inspect", "corral-own").stdout)[0]["Config"]
    assert (config["Entrypoint"], config["Cmd"]) == (None, ["sh"])
    dc.destroy("own")


def test_an_image_dockerd_lacks_is_pulled_or_refused(docker_env):
    """As Mesos: a missing image is pulled once; a pull that fails (here a registry on a closed
    loopback port: no traffic leaves the host) is one line, and nothing of the container is left."""
    dc = docker_env.sync()
    absent = {"type": "DOCKER", "name": "127.0.0.1:1/corral-test/absent:latest"}
    with pytest.raises(CorralError, match=r"^image 127.0.0.1:1/corral-test/absent:latest is not in dockerd and "
                                          r"could not be pulled \(dockerd at unix://\S+: .*127.0.0.1:1.*\)$"):
        dc.launch("absent", docker_env.config("true", image=absent))
    assert dc.containers() == []
    assert docker_env.dockerd.docker("ps", "-aq", "--filter", "name=corral-absent").stdout == ""
