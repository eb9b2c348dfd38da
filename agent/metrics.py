"""The agent's metrics: Mesos's names (GET /metrics/snapshot) and the Prometheus text form (GET /metrics).

Totals come from the agent's resources (custom ones too: slave/fpgas_total), use from its
allocator; task counts in TASK_STARTING and TASK_RUNNING are the containers now in that state,
the terminal ones count since the agent started.
corral's own: corral/waits_open, the WAIT calls the agent holds now; with gpu/nvidia, each GPU's
utilisation and memory as NVML reports them (corral/gpus/<index>/utilization_percent,
memory_used_bytes, memory_total_bytes).
"""

from __future__ import annotations

import re
import time

from corral.types import TASK_FAILED, TASK_FINISHED, TASK_KILLED, TASK_LOST, TASK_RUNNING, TASK_STARTING


def snapshot(agent) -> dict[str, float]:
    used = agent.allocator.total - agent.allocator.free()
    metrics: dict[str, float] = {"slave/uptime_secs": round(time.time() - agent.started, 3)}
    # Mesos's four, then each custom resource (fpgas, hugepages...) the same way.
    mesos = ("cpus", "mem", "disk", "gpus")
    for name in (*mesos, *sorted(agent.total.names() - {*mesos, "ports"})):
        total = _amount(agent.total.get(name))
        in_use = _amount(used.get(name))
        metrics[f"slave/{name}_total"] = total
        metrics[f"slave/{name}_used"] = in_use
        metrics[f"slave/{name}_percent"] = round(in_use / total, 4) if total else 0.0
    now = [agent.checkpoint.statuses(cid)[-1:] for cid in agent.records]
    for state in (TASK_STARTING, TASK_RUNNING):
        metrics[f"slave/tasks_{state[5:].lower()}"] = sum(1 for last in now if last and last[0]["state"] == state)
    for state in (TASK_FINISHED, TASK_FAILED, TASK_KILLED, TASK_LOST):
        metrics[f"slave/tasks_{state[5:].lower()}"] = agent.counters[state]
    metrics["slave/container_launch_errors"] = agent.counters["launch_errors"]
    metrics["containerizer/mesos/containers"] = len(agent.records)
    metrics["corral/waits_open"] = agent.waiting       # WAIT calls whose container has not ended
    if agent.units.get("gpus"):
        from corral.isolators.gpu import nvml
        for gpu in nvml.usage(agent.units["gpus"]):
            for field in ("utilization_percent", "memory_used_bytes", "memory_total_bytes"):
                if field in gpu:
                    metrics[f"corral/gpus/{gpu['index']}/{field}"] = float(gpu[field])
    return metrics


def _amount(value) -> float:
    """A scalar as it is; ranges and sets by how many values they hold (ports in use)."""
    if value is None:
        return 0.0
    return float(value) if isinstance(value, float) else float(len(value))


def prometheus(metrics: dict[str, float]) -> str:
    """`slave/cpus_total` -> `corral_slave_cpus_total 2`, one gauge per line."""
    lines = []
    for name, value in sorted(metrics.items()):
        flat = "corral_" + re.sub(r"[^A-Za-z0-9_]", "_", name)
        lines += [f"# TYPE {flat} gauge", f"{flat} {value:g}"]
    return "\n".join(lines) + "\n"
