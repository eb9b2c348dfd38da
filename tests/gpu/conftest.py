"""GPU tests: those needing a GPU run where NVML finds one, and are skipped elsewhere with the reason."""

from __future__ import annotations

import pytest

from tests.gpu.gpukit import nvml_gpus


@pytest.fixture(scope="session")
def gpus():
    found, reason = nvml_gpus()
    if not found:
        pytest.skip(reason or "NVML finds no GPU on this host")
    return found
