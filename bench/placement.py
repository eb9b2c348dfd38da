"""Placing a new process in its cgroups, each way timed from the fork to the child placed: the
parent's cgroup.procs write after a fork, against what the launcher does (clone3 with
CLONE_INTO_CGROUP into a cgroup2 cgroup; the child's own write of "0" to a v1 cgroup's `tasks`,
which takes no global lock). Back to back, and after a 50 ms quiet spell (the first cgroup.procs
write after one waits for an RCU grace period). Rows interleaved; the v1 rows where a v1 memory
hierarchy is mounted (v1 and hybrid hosts), the cgroup2 rows where cgroup2 is.

    .venv/bin/python bench/placement.py [--runs 40]
    ../shared/v2bed/run-in-v2-guest.sh '.venv/bin/python bench/placement.py'
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from corral import linux  # noqa: E402
from corral.cgroups import hierarchies  # noqa: E402


def fork_and_move(cgroup: str) -> float:
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
        f.write(str(pid))
    took = time.perf_counter() - start
    os.waitpid(pid, 0)
    return took * 1000


def clone_into(cgroup_fd: int) -> float:
    start = time.perf_counter()
    pid = linux.fork_into_cgroup(cgroup_fd)
    if pid == 0:
        os._exit(0)
    if pid is None:
        raise SystemExit("this kernel lacks clone3 with CLONE_INTO_CGROUP (Linux 5.7+)")
    took = time.perf_counter() - start
    os.waitpid(pid, 0)
    return took * 1000


def fork_and_join(tasks_fd: int) -> float:
    """The child writes "0" to the cgroup's `tasks` (open before the fork) and says so."""
    r, w = os.pipe()
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.write(tasks_fd, b"0")
        os.write(w, b"j")
        os._exit(0)
    os.read(r, 1)
    took = time.perf_counter() - start
    os.close(r)
    os.close(w)
    os.waitpid(pid, 0)
    return took * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=40)
    opts = parser.parse_args()
    h = hierarchies()
    name = f"corral-bench-{uuid.uuid4().hex[:8]}"
    made, fds, rows = [], [], {}
    try:
        if h.v2:
            v2 = os.path.join(h.v2, name)
            os.mkdir(v2)
            made.append(v2)
            fds.append(os.open(v2, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))
            rows["cgroup2: fork + cgroup.procs write"] = lambda: fork_and_move(v2)
            rows["cgroup2: clone3(CLONE_INTO_CGROUP)"] = lambda fd=fds[-1]: clone_into(fd)
        if "memory" in h.v1:
            v1 = os.path.join(h.v1["memory"], name)
            os.mkdir(v1)
            made.append(v1)
            fds.append(os.open(os.path.join(v1, "tasks"), os.O_WRONLY | os.O_CLOEXEC))
            rows["v1 memory: fork + cgroup.procs write"] = lambda: fork_and_move(v1)
            rows["v1 memory: fork, child joins (tasks)"] = lambda fd=fds[-1]: fork_and_join(fd)
        if not rows:
            raise SystemExit("no cgroup2 mount nor v1 memory hierarchy on this host")
        print(f"# {os.uname().release}, {os.cpu_count()} cpu, cgroups {h.mode}; {opts.runs} runs per row")
        for quiet in (0, 0.05):
            samples = {row: [] for row in rows}
            for _ in range(opts.runs):
                for row, fn in rows.items():
                    time.sleep(quiet)
                    samples[row].append(fn())
            for row, taken in samples.items():
                print(f"{'after 50 ms quiet' if quiet else 'back to back':<18} {row:<38} "
                      f"p50 {statistics.median(taken):7.2f} ms   p90 {sorted(taken)[int(0.9 * len(taken))]:7.2f} ms")
    finally:
        for fd in fds:
            os.close(fd)
        for path in made:
            os.rmdir(path)


if __name__ == "__main__":
    main()
