"""Mesos's CPU arithmetic, shared by the cgroups/cpu isolator and the docker containerizer:
shares = max(1024 x cpus, 2); CFS quota = cpus x 100 ms per 100 ms period (at least 1 ms).

Shares stop at the kernel's most (256 CPUs' worth): cgroup v1 clamps a larger value itself,
but its v2 equivalent, cpu.weight, refuses one past 10000 (ERANGE), in corral and in runc alike.
"""

CPU_SHARES_PER_CPU = 1024
MIN_CPU_SHARES = 2
MAX_CPU_SHARES = 262144     # the kernel's MAX_SHARES
CFS_PERIOD_US = 100_000
MIN_CFS_QUOTA_US = 1_000


def shares_for(cpus: float) -> int:
    return min(max(int(CPU_SHARES_PER_CPU * cpus), MIN_CPU_SHARES), MAX_CPU_SHARES)


def quota_for(cpus: float) -> int:
    return max(int(CFS_PERIOD_US * cpus), MIN_CFS_QUOTA_US)
