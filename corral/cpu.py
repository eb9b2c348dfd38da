"""Mesos's CPU arithmetic, shared by the cgroups/cpu isolator and the docker containerizer:
shares = max(1024 x cpus, 2); CFS quota = cpus x 100 ms per 100 ms period (at least 1 ms);
cgroup2 weight = 100 x cpus, within cpu.weight's [1, 10000] (Mesos's cgroups2 cpu controller:
one cpu weighs cgroup2's default 100, as 1024 shares are v1's default), rounded to the nearest
hundredth of a cpu so that the weight reads back as the cpus it stands for.

Shares stop at the kernel's most (256 CPUs' worth), which v1 would clamp a larger value to.
"""

CPU_SHARES_PER_CPU = 1024
MIN_CPU_SHARES = 2
MAX_CPU_SHARES = 262144     # the kernel's MAX_SHARES
CPU_WEIGHT_PER_CPU = 100
MIN_CPU_WEIGHT, MAX_CPU_WEIGHT = 1, 10_000
CFS_PERIOD_US = 100_000
MIN_CFS_QUOTA_US = 1_000


def shares_for(cpus: float) -> int:
    return min(max(int(CPU_SHARES_PER_CPU * cpus), MIN_CPU_SHARES), MAX_CPU_SHARES)


def weight_for(cpus: float) -> int:
    return min(max(round(CPU_WEIGHT_PER_CPU * cpus), MIN_CPU_WEIGHT), MAX_CPU_WEIGHT)


def quota_for(cpus: float) -> int:
    return max(int(CFS_PERIOD_US * cpus), MIN_CFS_QUOTA_US)
