"""Mesos resource syntax: text and JSON forms, ranges arithmetic, errors, and what the host has."""

from __future__ import annotations

import json
import os

import pytest

from corral.agent.resources import Resources, detect
from corral.ranges import Ranges
from corral.types import InvalidInput


def test_ranges_coalesce_and_subtract():
    assert str(Ranges.parse("[1-4,3-5,7-8,8-10]")) == "[1-5,7-10]"
    assert str(Ranges.parse("[3-8]") - Ranges.parse("[5-6]")) == "[3-4,7-8]"
    assert str(Ranges.parse("[1-2,3-4]")) == "[1-4]"            # adjacent ranges join too
    assert str(Ranges.parse("[1-10]") - Ranges.parse("[0-2,9-20]")) == "[3-8]"
    assert str(Ranges.parse("[1-5,10-15]") & Ranges.parse("[4-11]")) == "[4-5,10-11]"
    assert Ranges.parse("[5-6]") <= Ranges.parse("[3-8]") and not Ranges.parse("[5-9]") <= Ranges.parse("[3-8]")
    assert len(Ranges.parse("[31000-32000]")) == 1001
    assert list(Ranges.parse("[7, 1-2]")) == [1, 2, 7]
    assert not Ranges.parse("[]")


@pytest.mark.parametrize("text, problem", [
    ("[5-3]", "ends before it begins"),
    ("[a-b]", "not a range"),
    ("[1-2", "must be written"),
    ("[-1-2]", "not a range"),
])
def test_bad_ranges_are_named(text, problem):
    with pytest.raises(InvalidInput, match=problem):
        Ranges.parse(text)


def test_text_form():
    r = Resources.parse("cpus:2;mem:1024;disk:4096;ports:[31000-32000];gpus:0")
    assert r.get("cpus") == 2 and r.get("mem") == 1024 and r.get("disk") == 4096
    assert r.get("ports") == Ranges([(31000, 32000)])
    assert "gpus" not in r.names()                              # empty values are dropped, as in Mesos
    assert str(r) == "cpus:2;disk:4096;mem:1024;ports:[31000-32000]"


def test_roles_sets_and_repeats():
    r = Resources.parse(" cpus(analytics):1.5 ; cpus:2; cpus:0.25 ;gpu_ids:{a, b};ports:[1-4];ports:[3-5];")
    assert r.get("cpus", "analytics") == 1.5 and r.get("cpus", "*") == 2.25 and r.get("cpus") == 3.75
    assert r.get("gpu_ids") == frozenset({"a", "b"})
    assert str(r.get("ports")) == "[1-5]"
    assert str(r) == "cpus:2.25;cpus(analytics):1.5;gpu_ids:{a,b};ports:[1-5]"
    assert Resources.parse("cpus:0.1;cpus:0.2").get("cpus") == 0.3     # fixed point, as Mesos


def test_json_form_round_trips():
    text = "cpus:2;cpus(web):1;mem:512;ports:[31000-31005,31010-31010];zones:{a,b}"
    r = Resources.parse(text)
    assert Resources.from_json(r.to_json()) == r
    assert Resources.parse(json.dumps(r.to_json())) == r
    mesos = [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.5}},
             {"name": "cpus", "type": "SCALAR", "scalar": {"value": 1},
              "reservations": [{"role": "a"}, {"role": "a/b"}]},
             {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 80, "end": 81}]}, "role": "web"}]
    r = Resources.from_json(mesos)
    assert r.get("cpus", "*") == 0.5 and r.get("cpus", "a/b") == 1 and str(r.get("ports", "web")) == "[80-81]"


@pytest.mark.parametrize("text, problem", [
    ("cpus", r"bad resource 'cpus': write NAME:VALUE"),
    ("cpus:abc", r"bad resource 'cpus:abc': 'abc' is not a number"),
    ("cpus:-1", "not a non-negative number"),
    ("cpus:nan", "not a non-negative number"),
    ("mem:", "no value"),
    ("cpus():1", "empty role"),
    ("ports:[5-3]", r"bad resource 'ports:\[5-3\]': range 5-3 ends before it begins"),
    ("ports:[1-2];ports:3", "ports is given as both ranges and a scalar"),
    ("zones:{a,,b}", "empty item"),
    ("[{\"name\": \"cpus\"}", "not valid JSON"),
    ('[{"name": "cpus", "type": "SCALAR", "scalar": {"value": "2"}}]', r"resource 0 \(cpus\): wants \"scalar\""),
    ('[{"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 1}]}}]', "wants \"ranges\""),
    ('[{"name": "x", "type": "TEXT"}]', "type must be SCALAR, RANGES or SET"),
    ('[{"type": "SCALAR"}]', "resource 0 needs a name"),
    ('[{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1' + "0" * 400 + '}}]', "not a number"),  # past a float
])
def test_malformed_input_is_one_clear_line(text, problem):
    with pytest.raises(InvalidInput, match=problem) as info:
        Resources.parse(text)
    assert "\n" not in str(info.value)


def test_json_must_be_a_list():
    with pytest.raises(InvalidInput, match="must be a list of Resource objects"):
        Resources.from_json("cpus")


def test_arithmetic_and_shortages():
    total = Resources.parse("cpus:2;mem:1024;ports:[31000-31010];zones:{a,b}")
    used = Resources.parse("cpus:1.5;ports:[31000-31004];zones:{a}")
    free = total - used
    assert str(free) == "cpus:0.5;mem:1024;ports:[31005-31010];zones:{b}"
    assert free + used == total
    assert free.shortages(Resources.parse("cpus:0.5;ports:[31005-31006]")) == []
    assert free.shortages(Resources.parse("cpus:1;mem:2048;ports:[31000-31005];zones:{a,b};gpus:1")) == [
        "cpus: asked 1, 0.5 free", "gpus: asked 1, none free", "mem: asked 2048, 1024 free",
        "ports: [31000-31004] not free", "zones: {a} not free"]


def test_detect_fills_in_what_is_missing_as_mesos_does(tmp_path):
    detected = detect(Resources.parse("cpus:1;disk:10"), str(tmp_path / "not" / "yet"))
    assert detected.get("cpus") == 1 and detected.get("disk") == 10     # declared ones stay
    assert detected.get("ports") == Ranges([(31000, 32000)])
    total_mb = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // (1024 * 1024)
    assert detected.get("mem") == (total_mb - 1024 if total_mb >= 2048 else total_mb // 2)

    everything = detect(Resources.parse(""), str(tmp_path))
    assert everything.get("cpus") == os.cpu_count()
    stat = os.statvfs(tmp_path)
    disk_mb = stat.f_blocks * stat.f_frsize // (1024 * 1024)
    assert everything.get("disk") == (disk_mb - 5 * 1024 if disk_mb >= 10 * 1024 else disk_mb // 2)
    # a role counts as naming the resource: nothing is added beside cpus(web)
    assert detect(Resources.parse("cpus(web):1"), str(tmp_path)).get("cpus") == 1
