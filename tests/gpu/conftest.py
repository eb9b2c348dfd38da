"""GPU tests: those needing a GPU run where NVML finds one, and are skipped elsewhere with the reason."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "agent"))     # agentkit
sys.path.insert(0, os.path.dirname(__file__))                                  # gpukit

from gpukit import nvml_gpus  # noqa: E402


@pytest.fixture(scope="session")
def gpus():
    found, reason = nvml_gpus()
    if not found:
        pytest.skip(reason or "NVML finds no GPU on this host")
    return found
