"""The distribution installs one import package, `corral`, as psutil installs `psutil`: the project's
top-level folders (containerizers/, isolators/, provisioner/, agent/) are its subpackages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_install_adds_only_the_corral_package(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    python = str(venv / "bin" / "python")
    # `pip install .` into the bare venv, through this venv's pip (no dependencies: only what the
    # distribution itself adds is looked at).
    env = dict(os.environ, PIP_CONSTRAINT=str(REPO / "constraints.txt"), PIP_DISABLE_PIP_VERSION_CHECK="1")
    subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", str(REPO)],
                   check=True, env=env, capture_output=True)
    added = sorted(p.name for p in site.iterdir() if not p.name.startswith("_"))
    assert [name for name in added if not name.endswith(".dist-info")] == ["corral"]
    for name in ("containerizers", "isolators", "provisioner", "agent"):
        found = subprocess.run([python, "-c", f"import {name}"], cwd=tmp_path, capture_output=True, text=True)
        assert found.returncode != 0 and "ModuleNotFoundError" in found.stderr, name
    # Every subpackage is there, under corral (importing them needs the dependencies, which a
    # bare venv lacks: look at the files).
    for sub in ("containerizers/mesos/supervisor.py", "isolators/registry.py", "provisioner/store.py",
                "agent/main.py"):
        assert (site / "corral" / sub).is_file(), sub
