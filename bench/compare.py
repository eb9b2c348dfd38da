"""Compare two checkouts on one benchmark: run it from each, rounds interleaved, and print each
row's p50 in both, with the ratio new/old.

Each checkout runs its own bench/<script> with its own .venv (so an old checkout with other import
names runs as it was), from its own directory. The order alternates (old new, new old, ...) so
that drift in a busy host's speed hits both alike. A row's figure is the median over the rounds
of the p50 that the benchmark printed for it (print_table's rows; agent.py's recovery line too);
`paired` is the median of the rounds' own new/old ratios, `range` their spread: where that range
straddles 1.00 the difference is within the noise of this host. `to base` is the row's p50 over its
table's base row (runc's, in the same run: the benchmark's own ratio column) in old and new, and
their quotient: a busy host slows the runs of both checkouts unevenly, runc's row with them, and
this figure takes that out.

    .venv/bin/python bench/compare.py OLD NEW [--rounds N] [--map NEWROW=OLDROW] -- SCRIPT [ARGS...]

e.g. against the commit before a change (a second worktree with its own scripts/setup.sh):
    git worktree add --detach ../base f26454f && (cd ../base && scripts/setup.sh)
    .venv/bin/python bench/compare.py ../base . --rounds 3 -- bench/agent.py --recover 20
--map names an old row under another name (a row the new checkout renamed, or split: the new
cold CLI row with confinement off against the old one, which had none).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time

# print_table's rows: a name, the p50, the p95 (or min), the ratio to the base row.
ROW = re.compile(r"^(?P<name>\S.*?)\s+(?P<p50>\d+\.\d+)\s+\d+\.\d+\s+(?P<ratio>\d+\.\d+)x$")
RECOVERY = re.compile(r"^recovery: (?P<n>\d+) running containers.*API ready in (?P<ms>\d+) ms")


def rows(output: str) -> dict[str, tuple[float, float | None]]:
    """Row name -> (p50 ms, p50 over the table's base row), from a benchmark's printed tables."""
    found = {}
    for line in output.splitlines():
        if m := ROW.match(line):
            found[m["name"]] = (float(m["p50"]), float(m["ratio"]))
        elif m := RECOVERY.match(line):
            found[f"recovery of {m['n']} containers: API ready"] = (float(m["ms"]), None)
    return found


def run(checkout: str, script: list[str]) -> dict[str, tuple[float, float | None]]:
    python = os.path.join(checkout, ".venv", "bin", "python")
    result = subprocess.run([python, *script], cwd=checkout, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{checkout}: {' '.join(script)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    found = rows(result.stdout)
    if not found:
        raise SystemExit(f"{checkout}: {' '.join(script)} printed no rows:\n{result.stdout[-2000:]}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--map", action="append", default=[], metavar="NEWROW=OLDROW",
                        help="compare the new checkout's row NEWROW with the old one's OLDROW")
    argv = sys.argv[1:]
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        parser.error("name the benchmark after --, e.g. -- bench/agent.py --runs 20")
    opts = parser.parse_args(argv[:argv.index("--")])
    script = argv[argv.index("--") + 1:]
    mapped = dict(pair.split("=", 1) for pair in opts.map)        # new row -> old row
    old, new = os.path.abspath(opts.old), os.path.abspath(opts.new)

    samples: dict[str, dict[str, list[tuple[float, float | None]]]] = {old: {}, new: {}}
    began = time.monotonic()
    for i in range(opts.rounds):
        for checkout in ((old, new) if i % 2 == 0 else (new, old)):
            for name, figures in run(checkout, script).items():
                samples[checkout].setdefault(name, []).append(figures)
            print(f"# round {i + 1}/{opts.rounds}: {os.path.basename(checkout) or checkout} done, "
                  f"{time.monotonic() - began:.0f} s", file=sys.stderr)

    load = os.getloadavg()
    print(f"# {' '.join(script)}: {opts.rounds} interleaved rounds; old {old}, new {new}; "
          f"load average at the end {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} cpu")
    print(f"{'row (new; old where it differs)':<64} {'old ms':>8} {'new ms':>8} {'ratio':>6} {'paired':>7} "
          f"{'range':>9}   {'to base: old':>12} {'new':>5} {'ratio':>6}")
    for name, figures in samples[new].items():
        old_name = mapped.get(name, name)
        label = name if old_name == name else f"{name}; old: {old_name}"
        values = [p50 for p50, _ in figures]
        if not samples[old].get(old_name):
            print(f"{label:<64} {'-':>8} {statistics.median(values):8.2f}   (no old row)")
            continue
        before = [p50 for p50, _ in samples[old][old_name]]
        ratios = sorted(n / o for n, o in zip(values, before))
        line = (f"{label:<64} {statistics.median(before):8.2f} {statistics.median(values):8.2f} "
                f"{statistics.median(values) / statistics.median(before):5.2f}x {statistics.median(ratios):6.2f}x "
                f"{ratios[0]:.2f}-{ratios[-1]:.2f}")
        to_base = [statistics.median(r for _, r in f) for f in (samples[old][old_name], figures) if f[0][1] is not None]
        if len(to_base) == 2:
            line += f"   {to_base[0]:12.2f} {to_base[1]:5.2f} {to_base[1] / to_base[0]:5.2f}x"
        print(line)


if __name__ == "__main__":
    main()
