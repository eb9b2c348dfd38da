"""Isolators by name: built-ins, unknown names, and one from another installed distribution."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from corral.types import InvalidInput
from corral.isolators import Isolator, IsolatorFlags
from corral.isolators.registry import BUILTIN, create_isolators, isolator_class, parse_isolation


def test_builtins_resolve_by_name():
    for name in BUILTIN:
        assert issubclass(isolator_class(name), Isolator)
    made = create_isolators(["cgroups/cpu", "namespaces/pid"], IsolatorFlags())
    assert [i.name for i in made] == ["cgroups/cpu", "namespaces/pid"]


def test_unknown_and_repeated_names_are_clear_errors():
    with pytest.raises(InvalidInput, match=r"unknown isolator 'gpu/amd' \(known: cgroups/cpu"):
        isolator_class("gpu/amd")
    with pytest.raises(InvalidInput, match="named twice"):
        parse_isolation("cgroups/cpu,cgroups/cpu")


PLUGIN = '''
import os
from corral.isolators import Isolator, LaunchInfo

class MarkerIsolator(Isolator):
    """Proves each step ran: env for the task, files for isolate and cleanup."""
    def prepare(self, container_id, config):
        return LaunchInfo(env={"MARKER": "from-" + container_id})
    def isolate(self, container_id, pid):
        with open(os.path.join(os.environ["MARKER_DIR"], "isolated"), "w") as f:
            f.write(str(pid))
    def cleanup(self, container_id):
        open(os.path.join(os.environ["MARKER_DIR"], "cleaned"), "w").close()
'''


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    """A separate distribution, installed with pip, that adds `example/marker` to corral.isolators."""
    src = tmp_path_factory.mktemp("plugin-src")
    (src / "corral_marker").mkdir()
    (src / "corral_marker" / "__init__.py").write_text(PLUGIN)
    (src / "pyproject.toml").write_text(textwrap.dedent('''
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "corral-marker"
        version = "1.0"
        [project.entry-points."corral.isolators"]
        "example/marker" = "corral_marker:MarkerIsolator"
    '''))
    site = tmp_path_factory.mktemp("plugin-site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(site), str(src)], check=True, capture_output=True)
    return site


def test_isolator_from_another_distribution_is_loaded_by_name(corral, plugin_site, tmp_path):
    env = dict(corral.env, PYTHONPATH=str(plugin_site), MARKER_DIR=str(tmp_path))
    result = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "corral"), "run", "--name", "plug",
         "--isolation", "cgroups/mem,example/marker", "--", "/bin/sh", "-c", "echo $MARKER"],
        env=env, capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (0, "from-plug\n", "")
    assert int((tmp_path / "isolated").read_text()) > 1     # the init's host pid
    assert (tmp_path / "cleaned").exists()


def test_the_clis_default_isolation_is_the_registrys():
    """The CLI writes the default out (its help imports no registry): the two never differ."""
    from corral.cli.options import DEFAULT_ISOLATION as written
    from corral.isolators.registry import DEFAULT_ISOLATION
    assert written == ",".join(DEFAULT_ISOLATION)
