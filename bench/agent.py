"""Agent benchmark: the operator API against runc and crun, side by side in one run.

  round trip   LAUNCH_CONTAINER + WAIT_CONTAINER + REMOVE_CONTAINER of /bin/true through a running
               `corral agent` (one keep-alive HTTP connection), against `runc run` / `crun run` of the
               same command, limits and namespaces (bench/launch.py's bundle)
  burst        50 launches at once through the agent (50 connections), waited and removed, against
               50 concurrent runc / crun runs
  recovery     100 running containers; the agent is SIGKILLed and started again: the time from its
               start to its API answering, with all 100 re-attached

Run as root:  .venv/bin/python bench/agent.py [--runs N] [--burst N] [--recover N]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from launch import burst, in_crun_namespace, make_bundle, print_table, run_ok, runtime_cmd, timed  # noqa: E402

CPUS, MEM_MB = 0.5, 64
# The agent as a user starts it: the installed `corral` (compiled), never this checkout's sources,
# which `python -m` from here would import and, without a bytecode cache there, compile at every
# start (~80 ms more before the API answers).
CORRAL = os.path.join(os.path.dirname(sys.executable), "corral")


class Agent:
    def __init__(self, flags: list[str], port: int):
        self.port, self.flags = port, flags
        self.start()

    def start(self) -> float:
        """Start the agent; the seconds until its API answers."""
        began = time.perf_counter()
        self.proc = subprocess.Popen([CORRAL, "agent", *self.flags, f"--port={self.port}"],
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()
        if "listening on" not in line:
            raise SystemExit(f"the agent did not start: {line}{self.proc.stderr.read()}")
        self.connection().request("POST", "/api/v1", '{"type": "GET_HEALTH"}', {"Content-Type": "application/json"})
        return time.perf_counter() - began

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)

    @staticmethod
    def call(conn, call: str, body: dict) -> tuple[int, bytes]:
        conn.request("POST", "/api/v1", json.dumps({"type": call, call.lower(): body}),
                     {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()

    def run(self, conn, container_id: str, command: str = "/bin/true") -> None:
        body = {"container_id": {"value": container_id}, "command": {"shell": False, "value": command},
                "container": {"type": "MESOS", "hostname": "bench"},
                "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": CPUS}},
                              {"name": "mem", "type": "SCALAR", "scalar": {"value": MEM_MB}}]}
        for call, payload in (("LAUNCH_CONTAINER", body), ("WAIT_CONTAINER", {"container_id": body["container_id"]}),
                              ("REMOVE_CONTAINER", {"container_id": body["container_id"]})):
            status, answer = self.call(conn, call, payload)
            if status != 200:
                raise SystemExit(f"{call} {container_id}: {status} {answer[:300]!r}")

    def stop(self, sig: str = "TERM") -> None:
        self.proc.terminate() if sig == "TERM" else self.proc.kill()
        self.proc.wait()
        self.proc.stderr.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--burst-runs", type=int, default=3)
    parser.add_argument("--recover", type=int, default=100)
    opts = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run the benchmark as root")

    top = tempfile.mkdtemp(prefix="corral-bench-")
    root = f"corral-bench-{uuid.uuid4().hex[:8]}"
    flags = [f"--work_dir={top}/work", f"--runtime_dir={top}/run", f"--cgroups_root={root}",
             f"--resources=cpus:{opts.burst * CPUS + 4};mem:{opts.burst * MEM_MB + 4096};disk:1024",
             "--isolation=cgroups/cpu,cgroups/mem,namespaces/pid,namespaces/ipc"]
    bundle = make_bundle(top)
    agent = Agent(flags, port=15051)
    counter = iter(range(10**9))
    try:
        conn = agent.connection()
        rows = {"corral agent: LAUNCH+WAIT+REMOVE": lambda: agent.run(conn, f"r{next(counter)}"),
                "runc run": lambda: run_ok(runtime_cmd("runc", bundle))}
        samples = {name: [] for name in rows}
        for fn in rows.values():
            fn(), fn()
        for i in range(opts.runs):
            # Alternate the order: a launch right after another kind's is slower (caches, the other's
            # teardown still under way), and neither row should always take that place.
            for name, fn in (rows.items() if i % 2 else reversed(rows.items())):
                samples[name].append(timed(fn))

        def agent_burst() -> None:
            threads = [threading.Thread(target=agent.run, args=(agent.connection(), f"b{next(counter)}"))
                       for _ in range(opts.burst)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        bursts = {f"{opts.burst} x agent launch+wait+remove": [timed(agent_burst) for _ in range(opts.burst_runs)],
                  f"{opts.burst} x runc run": [burst([runtime_cmd("runc", bundle) for _ in range(opts.burst)])
                                              for _ in range(opts.burst_runs)]}
        if shutil.which("crun"):
            def crun_rows():
                run_ok(runtime_cmd("crun", bundle))
                single = [timed(lambda: run_ok(runtime_cmd("crun", bundle))) for _ in range(opts.runs)]
                return {"single": single, "burst": [burst([runtime_cmd("crun", bundle) for _ in range(opts.burst)])
                                                    for _ in range(opts.burst_runs)]}
            crun = in_crun_namespace(crun_rows)
            samples["crun run (private mount ns)"] = crun["single"]
            bursts[f"{opts.burst} x crun run (private mount ns)"] = crun["burst"]

        ids = [f"keep{i}" for i in range(opts.recover)]
        for cid in ids:
            status, answer = agent.call(conn, "LAUNCH_CONTAINER", {
                "container_id": {"value": cid}, "command": {"value": "sleep 1000"},
                "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.01}}]})
            assert status == 200, answer
        agent.stop("KILL")
        recovery = agent.start()
        conn = agent.connection()
        _, listed = agent.call(conn, "GET_CONTAINERS", {"show_standalone": True})     # the running ones
        running = len(json.loads(listed)["get_containers"]["containers"])
        for cid in ids:
            agent.call(conn, "KILL_CONTAINER", {"container_id": {"value": cid}})
            agent.call(conn, "WAIT_CONTAINER", {"container_id": {"value": cid}})
            agent.call(conn, "REMOVE_CONTAINER", {"container_id": {"value": cid}})
    finally:
        agent.stop()
        subprocess.run([CORRAL, "agent", *flags, "--recover=cleanup"], check=False)
        from corral.cgroups import remove_root
        remove_root(root)
        shutil.rmtree(top, ignore_errors=True)

    print(f"# {os.uname().release}, {os.cpu_count()} cpu; /bin/true, cpus {CPUS}, mem {MEM_MB} MiB; "
          f"{opts.runs} runs per row; ratios to runc")
    print_table("round trip", samples, "runc run")
    print()
    print_table("burst (all at once, wall time)", bursts, f"{opts.burst} x runc run", "min")
    print(f"\nrecovery: {opts.recover} running containers, SIGKILLed agent started again: API ready in "
          f"{recovery * 1000:.0f} ms, {running} re-attached as TASK_RUNNING")


if __name__ == "__main__":
    main()
