"""The GPU tests' helper, in a module of its own name (conftest.py is also tests/agent's)."""

from __future__ import annotations


def nvml_gpus():
    """The GPUs NVML finds, and the reason when there are none to test with."""
    from corral.types import InvalidInput
    from corral.isolators.gpu import nvml
    try:
        return nvml.gpus(), None
    except InvalidInput as e:
        return [], str(e)


def fake_nvml(count: int = 2):
    """A stand-in for NVIDIA's NVML binding (pynvml) on a host without NVIDIA's driver: `count`
    GPUs, GPU i at /dev/nvidia<i>, (i + 1) * 10 percent busy with i + 1 MiB of 16 GiB in use. Only the
    vendor's user-space library is stood in for: the cgroups, device rules and processes around
    it stay real. Put it in sys.modules["pynvml"]; a process forked afterwards has it too."""
    import types

    class NVMLError(Exception):
        pass

    def handle(index):
        if not 0 <= index < count:
            raise NVMLError("Invalid Argument")
        return index
    return types.SimpleNamespace(
        NVMLError=NVMLError, nvmlInit=lambda: None, nvmlDeviceGetCount=lambda: count,
        nvmlDeviceGetHandleByIndex=handle, nvmlDeviceGetUUID=lambda h: f"GPU-fake-{h}",
        nvmlDeviceGetMinorNumber=lambda h: h, nvmlSystemGetDriverVersion=lambda: "0.fake",
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(total=16 << 30, used=(h + 1) << 20),
        nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(gpu=(h + 1) * 10))
