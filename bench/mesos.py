"""Mesos benchmark: corral's agent against Apache's mesos-agent 1.11.1, under one real master.

  one task     a `mesos-execute --command=true` task, from mesos-execute's "Submitted task" to its
               "Received status update TASK_FINISHED" (the master's offer cycle is before the
               submission, and not counted); p50 of --runs, one at a time
  at once      --burst mesos-execute frameworks started together: each one's submission-to-
               TASK_FINISHED, and the time until the last of them is done (offers go to one
               framework per allocation, so that time is mostly the master's)

The master runs with --allocation_interval=50ms. The agents run one after the other on the same
master (an agent that is stopped is disconnected, and the master offers nothing of it), with
cpus, mem and pid namespaces isolated: corral's `cgroups/cpu,cgroups/mem,namespaces/pid`;
Apache's `cgroups/cpu,cgroups/mem,filesystem/linux,namespaces/pid` (filesystem/linux is what its
pid namespace needs), with its own cgroups root, work dir bind mount undone at the end.

Needs ../shared/mesos (tests/mesos/mesoskit.py unpacks it). Run as root:
    .venv/bin/python bench/mesos.py [--runs N] [--burst N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.append(str(HERE))             # after the repository: bench/agent.py is not the agent package

from launch import print_table  # noqa: E402
from tests.agent.agentkit import free_port_block  # noqa: E402
from tests.mesos.mesoskit import Master, Missing, environment, home, joined, until  # noqa: E402

RESOURCES = "cpus:4;mem:4096;disk:4096;ports:[31000-31999]"
TASK = "cpus:0.1;mem:32"


def submit_to_finished(master: Master, name: str) -> float:
    """One mesos-execute task of `true`: ms from its submission to TASK_FINISHED."""
    process = master.execute_async(f"--name={name}", "--command=true", f"--resources={TASK}")
    submitted = finished = None
    for line in process.stdout:
        if line.startswith("Submitted task"):
            submitted = time.perf_counter()
        elif line.startswith("Received status update TASK_"):
            state = line.split()[3]
            if state != "TASK_STARTING" and state != "TASK_RUNNING":
                finished = time.perf_counter()
                if state != "TASK_FINISHED":
                    raise SystemExit(f"task {name} ended {state}")
    process.wait()
    if submitted is None or finished is None:
        raise SystemExit(f"mesos-execute for {name} exited {process.returncode} without a finished task")
    return (finished - submitted) * 1000


def measure(master: Master, label: str, runs: int, burst: int) -> tuple[list[float], list[float], float]:
    submit_to_finished(master, f"{label}-warm")
    one = [submit_to_finished(master, f"{label}-{i}") for i in range(runs)]
    began = time.perf_counter()
    with ThreadPoolExecutor(burst) as pool:
        many = list(pool.map(lambda i: submit_to_finished(master, f"{label}-burst-{i}"), range(burst)))
    return one, many, (time.perf_counter() - began) * 1000


class CorralAgent:
    def __init__(self, master: Master, top: Path, root: str):
        self.port = free_port_block(1)
        self.flags = [f"--master={master.address}", f"--work_dir={top / 'corral-work'}",
                      f"--runtime_dir={top / 'corral-run'}", f"--cgroups_root={root}", f"--port={self.port}",
                      f"--resources={RESOURCES}", "--isolation=cgroups/cpu,cgroups/mem,namespaces/pid"]
        self.proc = subprocess.Popen([sys.executable, "-m", "corral.agent.main", *self.flags], stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        # Its containers all ended; forget them and their cgroups.
        subprocess.run([sys.executable, "-m", "corral.agent.main", *self.flags[1:], "--recover=cleanup"],
                       stderr=subprocess.DEVNULL, check=True)


class ApacheAgent:
    def __init__(self, mesos: Path, master: Master, top: Path, root: str):
        self.port = free_port_block(1)
        self.work_dir = top / "apache-work"
        self.log = open(top / "apache-agent.log", "ab")
        self.proc = subprocess.Popen([
            str(mesos / "bin" / "mesos-agent"), f"--master={master.address}", "--ip=127.0.0.1", f"--port={self.port}",
            f"--work_dir={self.work_dir}", f"--runtime_dir={top / 'apache-run'}", f"--launcher_dir={mesos / 'libexec'}",
            f"--cgroups_root={root}", "--isolation=cgroups/cpu,cgroups/mem,filesystem/linux,namespaces/pid",
            f"--resources={RESOURCES}", "--no-systemd_enable_support"],
            env=environment(), stdout=self.log, stderr=self.log)

    def containers(self) -> list | None:
        import urllib.request
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/containers", timeout=30) as r:
                return json.load(r)
        except OSError:
            return None                     # busy: ask again

    def stop(self) -> None:
        try:
            # Its command executors linger a moment after their tasks: let it destroy their containers.
            until(lambda: self.containers() == [], timeout=120, what="mesos-agent's containers destroyed")
        finally:
            self.proc.terminate()
            self.proc.wait(30)
            self.log.close()
            self._unmount()

    def _unmount(self) -> None:
        # It bind-mounts its work dir onto itself (filesystem/linux): undo that, and only that.
        with open("/proc/self/mountinfo") as f:
            mounted = [line.split()[4] for line in f]
        for point in reversed(mounted):
            if point == str(self.work_dir) or point.startswith(str(self.work_dir) + "/"):
                subprocess.run(["umount", "-l", point], check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--burst", type=int, default=20)
    parser.add_argument("--json", help="also write the figures to this file")
    opts = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run the benchmark as root")
    try:
        mesos = home()
    except Missing as e:
        raise SystemExit(f"bench/mesos.py: {e}") from None

    from corral.cgroups import remove_root
    top = Path(tempfile.mkdtemp(prefix="corral-bench-mesos-"))
    (top / "master").mkdir()
    corral_root, apache_root = f"corral-bench-{uuid.uuid4().hex[:8]}", f"mesos-bench-{uuid.uuid4().hex[:8]}"
    master = Master(mesos, top / "master", free_port_block(1), "--allocation_interval=50ms")
    results = {}
    try:
        for label, start in (("corral", lambda: CorralAgent(master, top, corral_root)),
                             ("mesos-agent", lambda: ApacheAgent(mesos, master, top, apache_root))):
            agent = start()
            try:
                until(lambda: joined(master, agent.port), timeout=60, what=f"{label} registered")
                results[label] = measure(master, label, opts.runs, opts.burst)
            finally:
                agent.stop()
                until(lambda: not joined(master, agent.port), timeout=60, what=f"{label} gone from offers")
    finally:
        master.stop()
        for root in (corral_root, apache_root):
            if remove_root(root):
                print(f"cgroups left under {root}: {remove_root(root)}", file=sys.stderr)
        shutil.rmtree(top, ignore_errors=True)

    print(f"mesos-execute `true` (cpus:0.1;mem:32), submission to TASK_FINISHED; "
          f"master --allocation_interval=50ms; {os.cpu_count()} cpus")
    figures = {"one": print_table(f"one task at a time (n={opts.runs})",
                                  {name: r[0] for name, r in results.items()}, base="corral")}
    print()
    figures["burst"] = print_table(f"{opts.burst} at once: each task",
                                   {name: r[1] for name, r in results.items()}, base="corral", spread="p95")
    for name, r in results.items():
        print(f"{opts.burst} at once: until the last is done, {name:<12} {r[2]:8.0f} ms   "
              f"(mean per task {statistics.mean(r[1]):.0f} ms)")
        figures["burst"][name]["all_done_ms"] = round(r[2])
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
