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
