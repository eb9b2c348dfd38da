"""Launch benchmark: corral against runc and crun, side by side in one run.

Each row launches /bin/true with cpu 0.5 and 64 MiB memory limits in new pid, mount, uts and
ipc namespaces (host network) and waits for it to exit and be cleaned up:

  corral run (cold)   the CLI, a fresh interpreter per launch; with the default confinement, and
                      with it off (--privileged)
  corral warm         an already-running SyncMesosContainerizer in this process: launch, wait, destroy;
                      with the default confinement (capabilities, no_new_privs, seccomp, masked paths,
                      devices and pids cgroups, docs/confinement.md), and with it off (--privileged)
  runc run            an OCI bundle of busybox with the same limits and namespaces (and `runc spec`'s
                      confinement: Docker's capabilities, masked paths, runc's devices; no seccomp)
  crun run            the same bundle; crun refuses hybrid cgroups, so on a hybrid host its rows run
                      in a private mount namespace where /sys/fs/cgroup/unified is unmounted (as in
                      shared/bench/peer-anchors.sh); nothing of the host's mounts changes
  corral warm, fork + cgroup.procs   on a pure cgroup2 host only: the warm row with init placed
                      the old way (fork, then cgroup.procs writes) instead of clone3 into its cgroup

A runtime that cannot run here (runc in some guests) is left out with a note; ratios are to
runc's row, else to crun's. In the pure cgroup2 guest:
  ../shared/v2bed/run-in-v2-guest.sh '.venv/bin/python bench/launch.py --runs 15'

Rows are interleaved round-robin, in a new order each round, so that drift in the machine's
speed, and what a row leaves the kernel to finish after it (a cold CLI's exit, say), hit all of
them alike.
Then a burst: 50 launches at once of each (the cold CLI with its confinement and without). Run as root:  .venv/bin/python bench/launch.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from corral import linux  # noqa: E402
from corral.types import ContainerConfig, Resources  # noqa: E402

CORRAL = os.path.join(os.path.dirname(sys.executable), "corral")
CPUS, MEM_MB = 0.5, 64


def make_bundle(top: str) -> str:
    """A busybox rootfs and an OCI config with corral's limits and namespaces (no network ns)."""
    bundle = os.path.join(top, "bundle")
    rootfs = os.path.join(bundle, "rootfs")
    os.makedirs(os.path.join(rootfs, "bin"))
    for d in ("proc", "sys", "dev", "tmp", "etc"):
        os.makedirs(os.path.join(rootfs, d))
    shutil.copy("/bin/busybox", os.path.join(rootfs, "bin", "busybox"))
    os.symlink("busybox", os.path.join(rootfs, "bin", "true"))
    subprocess.run(["runc", "spec"], cwd=bundle, check=True)
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        config = json.load(f)
    config["process"]["terminal"] = False
    config["process"]["args"] = ["/bin/true"]
    config["root"] = {"path": rootfs, "readonly": True}
    config["hostname"] = "bench"
    config["linux"]["namespaces"] = [n for n in config["linux"]["namespaces"] if n["type"] != "network"]
    config["linux"]["resources"] = {**config["linux"].get("resources", {}),
                                    "memory": {"limit": MEM_MB * 1024 * 1024},
                                    "cpu": {"quota": int(CPUS * 100_000), "period": 100_000}}
    with open(path, "w") as f:
        json.dump(config, f)
    return bundle


def runtime_cmd(runtime: str, bundle: str) -> list[str]:
    return [runtime, "run", "--bundle", bundle, f"bench-{runtime}-{uuid.uuid4().hex[:12]}"]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def run_ok(cmd: list[str], env=None) -> None:
    result = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if result.returncode != 0:
        raise SystemExit(f"benchmark command failed: {' '.join(cmd)}: {result.stderr.decode()[-300:]}")


def burst(cmds: list[list[str]], env=None) -> float:
    start = time.perf_counter()
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for c in cmds]
    failed = [p for p in procs if p.wait() != 0]
    if failed:
        raise SystemExit(f"burst: {len(failed)} of {len(cmds)} failed: {failed[0].stderr.read().decode()[-300:]}")
    return (time.perf_counter() - start) * 1000


def in_crun_namespace(fn):
    """Run fn() in a child whose private mount namespace lacks the hybrid host's cgroup2 mount
    (none to hide on a v1 or pure cgroup2 host); return its result."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            linux.unshare(linux.CLONE_NEWNS)
            linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
            if os.path.ismount("/sys/fs/cgroup/unified"):
                linux.umount2("/sys/fs/cgroup/unified", linux.MNT_DETACH)
            os.write(write_fd, json.dumps(fn()).encode())
            os._exit(0)
        except BaseException as e:  # noqa: BLE001
            os.write(write_fd, json.dumps({"error": str(e)}).encode())
            os._exit(1)
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        result = json.loads(f.read() or "{}")
    os.waitpid(pid, 0)
    if isinstance(result, dict) and "error" in result:
        raise SystemExit(f"crun rows failed: {result['error']}")
    return result


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def print_table(title: str, rows: dict[str, list[float]], base: str, spread: str = "p95") -> dict:
    """Print each row's p50, its p95 (or min), and its p50's ratio to row `base`'s; return those
    figures by row, for --json."""
    base_p50 = statistics.median(rows[base])
    print(f"{title:<52} {'p50 ms':>8} {spread + ' ms':>8} {'ratio':>7}")
    figures = {}
    for name, values in rows.items():
        p50 = statistics.median(values)
        other = pct(values, 0.95) if spread == "p95" else min(values)
        figures[name] = {"p50_ms": round(p50, 2), f"{spread}_ms": round(other, 2), "ratio": round(p50 / base_p50, 2)}
        print(f"{name:<52} {p50:8.2f} {other:8.2f} {p50 / base_p50:6.2f}x")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--burst-runs", type=int, default=3)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--warm-only", action="store_true",
                        help="only the two warm rows (confinement on and off), interleaved: the added cost "
                             "of confinement on a busy host, where the other rows' noise would hide it")
    opts = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run the benchmark as root")

    top = tempfile.mkdtemp(prefix="corral-bench-")
    root = f"corral-bench-{uuid.uuid4().hex[:8]}"
    work, runtime = os.path.join(top, "work"), os.path.join(top, "run")
    env = dict(os.environ, CORRAL_WORK_DIR=work, CORRAL_RUNTIME_DIR=runtime, CORRAL_CGROUPS_ROOT=root)
    bundle = make_bundle(top)
    from corral.containerizers.mesos.sync import SyncMesosContainerizer
    from corral.cgroups import hierarchies
    hybrid = hierarchies().mode == "hybrid"
    warm = SyncMesosContainerizer(work, runtime, root)
    # The same, placing init the old way (fork + cgroup.procs), to measure what clone3 saves.
    moved = SyncMesosContainerizer(work, runtime, root)
    moved.launcher.clone_into_cgroup = False
    config = dict(argv=["/bin/true"], resources=Resources(cpus=CPUS, mem_mb=MEM_MB), hostname="bench")
    counter = iter(range(10**9))

    def warm_launch(containerizer=warm, **extra):
        cid = f"w{next(counter)}"
        containerizer.launch(cid, ContainerConfig(**config, **extra))
        containerizer.wait(cid)
        containerizer.destroy(cid, remove_sandbox=True)

    cold_cmd = [CORRAL, "run", "--cpus", str(CPUS), "--mem", str(MEM_MB), "--hostname", "bench", "--", "/bin/true"]
    rows = {
        "corral run (cold CLI)": lambda: run_ok(cold_cmd, env),
        "corral run (cold CLI), confinement off": lambda: run_ok(cold_cmd[:2] + ["--privileged"] + cold_cmd[2:], env),
        "corral warm containerizer": warm_launch,
        "corral warm containerizer, confinement off": lambda: warm_launch(privileged=True),
    }
    if warm.launcher.clone_into_cgroup and not hybrid:      # pure cgroup2: there clone3 is all the placement
        rows["corral warm, fork + cgroup.procs (no clone3)"] = lambda: warm_launch(moved)
    runc_runs = subprocess.run(runtime_cmd("runc", bundle), capture_output=True, text=True)
    if runc_runs.returncode == 0:
        rows["runc run"] = lambda: run_ok(runtime_cmd("runc", bundle))
    else:
        print(f"# runc left out: it fails here: {runc_runs.stderr.strip()[-200:]}")
    crun_row = "crun run (private mount ns)" if hybrid else "crun run"
    if opts.warm_only:
        rows = {name: fn for name, fn in rows.items() if name.startswith("corral warm")}
    samples: dict[str, list[float]] = {name: [] for name in rows}
    try:
        for name, fn in rows.items():        # warm-up: page cache, pyc files, cgroup roots
            fn(), fn()
        order = list(rows)
        shuffle = random.Random(0).shuffle
        for _ in range(opts.runs):
            shuffle(order)
            for name in order:
                samples[name].append(timed(rows[name]))

        if opts.warm_only:
            print_table("launch -> exit (warm)", samples, "corral warm containerizer, confinement off")
            return

        def crun_rows():
            run_ok(runtime_cmd("crun", bundle))
            single = [timed(lambda: run_ok(runtime_cmd("crun", bundle))) for _ in range(opts.runs)]
            bursts = [burst([runtime_cmd("crun", bundle) for _ in range(opts.burst)]) for _ in range(opts.burst_runs)]
            return {"single": single, "burst": bursts}
        crun = None
        if shutil.which("crun"):
            crun = in_crun_namespace(crun_rows) if hybrid else crun_rows()
        if crun:
            samples[crun_row] = crun["single"]

        def warm_burst():
            ids = [f"b{next(counter)}" for _ in range(opts.burst)]
            for cid in ids:
                warm.launch(cid, ContainerConfig(**config))
            for cid in ids:
                warm.wait(cid)
                warm.destroy(cid, remove_sandbox=True)
        bursts = {
            f"{opts.burst} x corral run (cold CLI)": [burst([cold_cmd] * opts.burst, env) for _ in range(opts.burst_runs)],
            f"{opts.burst} x corral run (cold CLI), confinement off": [
                burst([cold_cmd[:2] + ["--privileged"] + cold_cmd[2:]] * opts.burst, env) for _ in range(opts.burst_runs)],
            f"{opts.burst} x corral warm containerizer": [timed(warm_burst) for _ in range(opts.burst_runs)],
        }
        if "runc run" in rows:
            bursts[f"{opts.burst} x runc run"] = [burst([runtime_cmd("runc", bundle) for _ in range(opts.burst)])
                                                 for _ in range(opts.burst_runs)]
        if crun:
            bursts[f"{opts.burst} x {crun_row}"] = crun["burst"]
    finally:
        for cid in warm.containers():
            warm.destroy(cid, remove_sandbox=True)
        from corral.cgroups import remove_root
        remove_root(root)
        shutil.rmtree(top, ignore_errors=True)

    base = "runc run" if "runc run" in samples else crun_row
    print(f"# {os.uname().release}, {os.cpu_count()} cpu, cgroups {hierarchies().mode}; /bin/true, cpus {CPUS}, "
          f"mem {MEM_MB} MiB, pid+mnt+uts+ipc namespaces; {opts.runs} runs per row; ratios to {base}")
    figures = print_table("launch -> exit", samples, base)
    print()
    figures.update(print_table("burst (all at once, wall time)", bursts, f"{opts.burst} x {base}", "min"))
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
