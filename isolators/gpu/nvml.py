"""What NVML (NVIDIA's management library, through nvidia-ml-py) says of the host's GPUs.

nvidia-ml-py is an optional dependency (`pip install 'corral[gpu]'`), imported on first use; a
host without it, or without NVIDIA's driver (libnvidia-ml.so), is one InvalidInput line.
"""

from __future__ import annotations

import os

from corral.record import Record
from corral.types import InvalidInput

_initialised_in: int | None = None      # the pid that initialised NVML


class Gpu(Record):
    index: int            # NVML's index, what --nvidia_gpu_devices and NVIDIA_VISIBLE_DEVICES name
    minor: int            # /dev/nvidia<minor>, character device 195:<minor>
    uuid: str
    memory_total: int     # bytes


def nvml():
    """The pynvml module, initialised once per process: a process forked after the agent's
    check (the launch server) initialises its own rather than use handles it inherited."""
    global _initialised_in
    try:
        import pynvml
    except ImportError:
        raise InvalidInput("gpu/nvidia needs nvidia-ml-py (NVIDIA's NVML binding): "
                           "pip install 'corral[gpu]'") from None
    if _initialised_in != os.getpid():
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as e:
            raise InvalidInput(f"gpu/nvidia: no NVIDIA driver on this host (NVML: {e})") from None
        _initialised_in = os.getpid()
    return pynvml


def gpus() -> list[Gpu]:
    """Every GPU NVML finds, by index."""
    pynvml = nvml()
    found = []
    for index in range(pynvml.nvmlDeviceGetCount()):
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        uuid = pynvml.nvmlDeviceGetUUID(handle)
        found.append(Gpu(index=index, minor=pynvml.nvmlDeviceGetMinorNumber(handle),
                         uuid=uuid.decode() if isinstance(uuid, bytes) else uuid,
                         memory_total=pynvml.nvmlDeviceGetMemoryInfo(handle).total))
    return found


def driver_version() -> str:
    version = nvml().nvmlSystemGetDriverVersion()
    return version.decode() if isinstance(version, bytes) else version


def usage(indices) -> list[dict]:
    """Per GPU: its utilisation (percent of the last sample period) and memory used, in bytes."""
    pynvml = nvml()
    stats = []
    for index in indices:
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(int(index))
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            utilization = pynvml.nvmlDeviceGetUtilizationRates(handle).gpu
        except pynvml.NVMLError as e:        # a GPU fallen off the bus, say: the others still count
            stats.append({"index": int(index), "error": str(e)})
            continue
        stats.append({"index": int(index), "utilization_percent": utilization,
                      "memory_used_bytes": memory.used, "memory_total_bytes": memory.total})
    return stats
