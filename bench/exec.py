"""Exec benchmark: `corral exec ID -- /bin/true` against `runc exec` and `docker exec`, in one run.

Each row runs /bin/true (busybox's) in an already running container and waits for its end:

  corral exec (cold CLI)       a fresh interpreter per exec, into a Mesos container of the busybox
                               image with corral's default isolation and confinement (pid, mount,
                               ipc namespaces; cpu, memory, pids, devices cgroups; capabilities,
                               no_new_privs, seccomp): setns, cgroups, confinement, exec, wait
  corral exec (warm)           SyncMesosContainerizer.exec in this process, the same container
  runc exec                    into a `runc run -d` container of a busybox bundle as bench/launch.py
                               makes it (runc spec's confinement: no seccomp), its own --root
  docker exec                  the docker CLI into a `docker run -d --network host` busybox
                               container of a private dockerd (tests/private_dockerd.py)
  corral exec, docker container (cold CLI)   the CLI through dockerd's exec API, into the same
  python -c pass               the interpreter alone: the floor of any Python CLI

Rows are interleaved, in an order shuffled each round (seeded): a rotated order is one fixed cycle,
where runc's row always came right after the warm exec's cgroup.procs writes, and found the
kernel's cgroup migration lock ready (the first write after a quiet spell waits for an RCU grace
period), and the cold CLI's always after `python -c pass`. Ratios are to runc exec.
Run as root:  .venv/bin/python bench/exec.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "bench")]

from launch import make_bundle, print_table, timed  # noqa: E402
from tests.private_dockerd import BUSYBOX_IMAGE, PrivateDockerd  # noqa: E402

from corral.containerizers.mesos.sync import SyncMesosContainerizer  # noqa: E402
from corral.types import ExecConfig  # noqa: E402

CORRAL = os.path.join(os.path.dirname(sys.executable), "corral")
LOCAL_IMAGES = "/var/lib/corral/images"      # scripts/setup.sh writes busybox's tarball there


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    top = tempfile.mkdtemp(prefix="corral-bench-exec-", dir="/tmp")
    cgroups_root = f"corral-bench-{uuid.uuid4().hex[:8]}"
    work, run = os.path.join(top, "work"), os.path.join(top, "run")
    env = dict(os.environ, CORRAL_WORK_DIR=work, CORRAL_RUNTIME_DIR=run, CORRAL_CGROUPS_ROOT=cgroups_root)
    runc_root, runc_id = os.path.join(top, "runc"), f"bench-exec-{uuid.uuid4().hex[:8]}"
    daemon = PrivateDockerd(top + "/d", cgroup_parent=f"corral-bench-{uuid.uuid4().hex[:8]}")
    docker_id = None
    try:
        def sh(*argv):
            return lambda: subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)

        subprocess.run([CORRAL, "run", "--detach", "--name", "bench", "--docker-registry", LOCAL_IMAGES,
                        "--image", "busybox", "--", "sleep", "100000"], env=env, check=True, stdout=subprocess.DEVNULL)
        warm = SyncMesosContainerizer(work, run, cgroups_root)

        def corral_warm():
            with warm.exec("bench", ExecConfig(argv=["/bin/true"])) as execution:
                assert execution.wait() == 0

        bundle = make_bundle(top)
        os.symlink("busybox", os.path.join(bundle, "rootfs", "bin", "sleep"))
        config_path = os.path.join(bundle, "config.json")
        with open(config_path) as f:
            config = json.load(f)
        config["process"]["args"] = ["sleep", "100000"]
        with open(config_path, "w") as f:
            json.dump(config, f)
        subprocess.run(["runc", "--root", runc_root, "run", "-d", "--bundle", bundle, runc_id], check=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        os.makedirs(top + "/d")
        daemon.start()
        daemon.load_busybox()
        docker_env = dict(env, DOCKER_HOST=daemon.url, DOCKER_CONFIG=os.path.join(top, "cli-config"))
        docker_id = subprocess.run(["docker", "run", "-d", "--network", "host", BUSYBOX_IMAGE, "sleep", "100000"],
                                   env=docker_env, check=True, capture_output=True, text=True).stdout.strip()
        subprocess.run([CORRAL, "run", "--detach", "--name", "bench-docker", "--containerizer", "docker", "--image",
                        BUSYBOX_IMAGE, "--", "sleep", "100000"], env=docker_env, check=True, stdout=subprocess.DEVNULL)

        def in_docker(*argv):
            return lambda: subprocess.run(argv, env=docker_env, check=True, stdout=subprocess.DEVNULL)

        rows = {
            "corral exec ID -- /bin/true (cold CLI)": sh(CORRAL, "exec", "bench", "--", "/bin/true"),
            "corral exec (warm, in-process)": corral_warm,
            "runc exec ID /bin/true": sh("runc", "--root", runc_root, "exec", runc_id, "/bin/true"),
            "docker exec ID true": in_docker("docker", "exec", docker_id, "true"),
            "corral exec into a docker container (cold CLI)": in_docker(CORRAL, "exec", "bench-docker", "--", "true"),
            "python -c pass": sh(sys.executable, "-c", "pass"),
        }
        times = {name: [] for name in rows}
        for fn in rows.values():            # warm-up: page cache, dockerd
            fn()
        order, shuffle = list(rows.items()), random.Random(14).shuffle
        for _ in range(args.runs):
            shuffle(order)
            for name, fn in order:
                times[name].append(timed(fn))
        runc = subprocess.run(["runc", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
        print(f"# {args.runs} runs each, interleaved; {runc}, {os.cpu_count()} cpus; ratios to runc exec")
        figures = print_table("row", times, "runc exec ID /bin/true")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(figures, f, indent=2)
    finally:
        subprocess.run(["runc", "--root", runc_root, "delete", "-f", runc_id], stderr=subprocess.DEVNULL)
        subprocess.run([CORRAL, "destroy", "bench"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if docker_id:
            docker_env = dict(env, DOCKER_HOST=daemon.url)
            subprocess.run([CORRAL, "destroy", "bench-docker"], env=docker_env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            subprocess.run(["docker", "rm", "-f", docker_id], env=docker_env, stdout=subprocess.DEVNULL)
        daemon.stop()
        for line in open("/proc/self/mountinfo").read().splitlines():
            if line.split()[4].startswith(top):
                subprocess.run(["umount", "-l", line.split()[4]], check=False)
        from corral.cgroups import remove_root
        remove_root(daemon.cgroup_parent)
        remove_root(cgroups_root)
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
