"""Docker launch benchmark: `corral run --containerizer docker` against plain `docker run --rm`.

A private dockerd (tests/private_dockerd.py: own socket, data-root, exec-root, no
iptables, no bridge) with a busybox image built from /bin/busybox; every row runs `true` in that
image on the host network (corral's default) and waits for it to end and be removed:

  corral run (cold)        the CLI: a fresh interpreter speaking plain HTTP on dockerd's socket
                           (no SDK import): create/start/logs/wait/inspect/remove
  corral warm              SyncDockerContainerizer in this process, through the docker SDK (the
                           agent's path): launch, wait, destroy
  docker run --rm          the docker CLI (Go), --network host
  docker run --rm --init   the same with docker-init as pid 1, as corral runs containers
  python -c 'import docker'  what the SDK's import alone would cost a cold CLI
  python -c 'import corral.cli.run, corral.containerizers.docker'   what the cold CLI imports
  python -c pass           the interpreter alone: the floor of any Python CLI

Rows are interleaved, in an order rotated each round, so that drift in the machine's speed and
what runs just before hit all alike.
Run as root:  .venv/bin/python bench/docker_launch.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "bench")]

from launch import print_table, timed  # noqa: E402
from tests.private_dockerd import BUSYBOX_IMAGE, PrivateDockerd  # noqa: E402

from corral.containerizers.docker import SyncDockerContainerizer  # noqa: E402
from corral.types import ContainerConfig  # noqa: E402

CORRAL = os.path.join(os.path.dirname(sys.executable), "corral")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    top = tempfile.mkdtemp(prefix="corral-bench-dockerd-", dir="/tmp")
    daemon = PrivateDockerd(top, cgroup_parent=f"corral-bench-{uuid.uuid4().hex[:8]}")
    daemon.start()
    try:
        daemon.load_busybox()
        work, run = os.path.join(top, "work"), os.path.join(top, "run")
        env = dict(os.environ, DOCKER_HOST=daemon.url, DOCKER_CONFIG=os.path.join(top, "cli-config"),
                   CORRAL_WORK_DIR=work, CORRAL_RUNTIME_DIR=run)
        warm = SyncDockerContainerizer(work, run, socket=daemon.url, only=True)
        config = ContainerConfig(argv=["true"], image={"type": "DOCKER", "name": BUSYBOX_IMAGE})
        counter = iter(range(10**9))

        def sh(*argv):
            return lambda: subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)

        def corral_warm():
            cid = f"warm-{next(counter)}"
            warm.launch(cid, config)
            warm.wait(cid)
            warm.destroy(cid, remove_sandbox=True)

        rows = {
            "corral run --containerizer docker (cold CLI)":
                sh(CORRAL, "run", "--containerizer", "docker", "--image", BUSYBOX_IMAGE, "--", "true"),
            "docker run --rm --network host": sh("docker", "run", "--rm", "--network", "host", BUSYBOX_IMAGE, "true"),
            "docker run --rm --init --network host":
                sh("docker", "run", "--rm", "--init", "--network", "host", BUSYBOX_IMAGE, "true"),
            "corral warm (SyncDockerContainerizer in-process)": corral_warm,
            "python -c 'import docker'": sh(sys.executable, "-c", "import docker"),
            "python -c 'import corral.cli.run, corral.containerizers.docker'":
                sh(sys.executable, "-c", "import corral.cli.run, corral.containerizers.docker"),
            "python -c pass": sh(sys.executable, "-c", "pass"),
        }
        times = {name: [] for name in rows}
        for fn in rows.values():            # warm-up: page cache, the daemon's image store
            fn()
        order = list(rows.items())
        for i in range(args.runs):
            # Rotate the order: no row always runs right after the same other one.
            for name, fn in order[i % len(order):] + order[:i % len(order)]:
                times[name].append(timed(fn))
        version = daemon.docker("version", "-f", "{{.Server.Version}}").stdout.strip()
        print(f"# {args.runs} runs each, interleaved; dockerd {version}, {os.cpu_count()} cpus; ratios to docker run")
        print_table("row", times, "docker run --rm --network host")
        assert warm.containers() == []
    finally:
        daemon.stop()
        for line in open("/proc/self/mountinfo").read().splitlines():
            if line.split()[4].startswith(top):
                subprocess.run(["umount", "-l", line.split()[4]], check=False)
        from corral.cgroups import remove_root
        remove_root(daemon.cgroup_parent)
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
