"""Placing a new process in a cgroup2 cgroup: fork + a cgroup.procs write, against clone3 with
CLONE_INTO_CGROUP (what the launcher does on a pure cgroup2 host), each timed from the fork to
the child placed; back to back, and after a 50 ms quiet spell (the first cgroup.procs write after
one waits for an RCU grace period). Rows interleaved. Needs a cgroup2 mount (hybrid or pure v2).

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=40)
    opts = parser.parse_args()
    if not hierarchies().v2:
        raise SystemExit("no cgroup2 mount on this host")
    cgroup = os.path.join(hierarchies().v2, f"corral-bench-{uuid.uuid4().hex[:8]}")
    os.mkdir(cgroup)
    fd = os.open(cgroup, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def fork_and_move() -> float:
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
            f.write(str(pid))
        took = time.perf_counter() - start
        os.waitpid(pid, 0)
        return took * 1000

    def clone_into() -> float:
        start = time.perf_counter()
        pid = linux.fork_into_cgroup(fd)
        if pid == 0:
            os._exit(0)
        if pid is None:
            raise SystemExit("this kernel lacks clone3 with CLONE_INTO_CGROUP (Linux 5.7+)")
        took = time.perf_counter() - start
        os.waitpid(pid, 0)
        return took * 1000

    try:
        print(f"# {os.uname().release}, {os.cpu_count()} cpu, cgroups {hierarchies().mode}; {opts.runs} runs per row")
        for quiet in (0, 0.05):
            rows = {"fork + cgroup.procs write": (fork_and_move, []), "clone3(CLONE_INTO_CGROUP)": (clone_into, [])}
            for _ in range(opts.runs):
                for fn, samples in rows.values():
                    time.sleep(quiet)
                    samples.append(fn())
            for name, (_, samples) in rows.items():
                print(f"{'after 50 ms quiet' if quiet else 'back to back':<18} {name:<26} "
                      f"p50 {statistics.median(samples):7.2f} ms   p90 {sorted(samples)[int(0.9 * len(samples))]:7.2f} ms")
    finally:
        os.close(fd)
        os.rmdir(cgroup)


if __name__ == "__main__":
    main()
