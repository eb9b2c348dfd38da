"""The allocator: never more than it has, ports inside the agent's and free, picks that skip the
host's ports, and a checkpoint that outlives the agent."""

from __future__ import annotations

import socket

import pytest

from corral.agent.allocator import Allocator, InsufficientResources
from corral.agent.ports import HostPorts, port_env
from corral.agent.resources import Resources
from corral.files import DamagedFile
from corral.ranges import Ranges

R = Resources.parse


def test_never_hands_out_more_than_it_has():
    a = Allocator(R("cpus:2;mem:1024;zones:{a,b}"))
    assert a.allocate("c1", R("cpus:1.5;mem:512;zones:{a}")) == R("cpus:1.5;mem:512;zones:{a}")
    with pytest.raises(InsufficientResources, match=r"^not enough free resources for c2: "
                       r"cpus: asked 1, 0.5 free; gpus: asked 1, none free; zones: \{a\} not free$"):
        a.allocate("c2", R("cpus:1;mem:512;gpus:1;zones:{a}"))
    assert a.free() == R("cpus:0.5;mem:512;zones:{b}")        # a refusal takes nothing
    a.allocate("c2", R("cpus:0.5;mem:512"))
    with pytest.raises(InsufficientResources, match="mem: asked 1, none free"):
        a.allocate("c3", R("mem:1"))
    a.release("c1")
    assert a.free() == R("cpus:1.5;mem:512;zones:{a,b}")


def test_explicit_ports_must_lie_inside_the_agents_and_be_free(port_block, listen):
    base = port_block(10)
    a = Allocator(R(f"ports:[{base}-{base + 9}]"), host=HostPorts())
    a.allocate("c1", R(f"ports:[{base}-{base + 1}]"))
    with pytest.raises(InsufficientResources, match=rf"ports: \[{base + 10}-{base + 10}\] outside the agent's "
                                                    rf"ports \[{base}-{base + 9}\]"):
        a.allocate("c2", R(f"ports:[{base + 9}-{base + 10}]"))
    with pytest.raises(InsufficientResources, match=rf"ports: \[{base + 1}-{base + 1}\] not free"):
        a.allocate("c2", R(f"ports:[{base + 1}-{base + 2}]"))
    listen(base + 3)
    listen(base + 4, socket.AF_INET6, socket.SOCK_DGRAM)
    with pytest.raises(InsufficientResources, match=rf"ports: \[{base + 3}-{base + 4}\] in use on the host"):
        a.allocate("c2", R(f"ports:[{base + 2}-{base + 5}]"))
    assert a.allocate("c2", R(f"ports:[{base + 5}-{base + 6}]")).get("ports") == Ranges([(base + 5, base + 6)])


def test_a_number_of_ports_skips_bound_ports_and_the_ephemeral_range(port_block, listen):
    low = HostPorts().ephemeral().spans[0][0]
    base = port_block(6)        # six ports below the ephemeral range that nothing holds (not even in TIME-WAIT)
    a = Allocator(R(f"cpus:1;ports:[{base}-{base + 5},{low}-{low + 20}]"), host=HostPorts())
    listen(base + 1)
    listen(base + 3, socket.AF_INET6)
    given = a.allocate("c1", R("ports:3;cpus:0.5"))
    assert given.get("ports") == Ranges([(base, base), (base + 2, base + 2), (base + 4, base + 4)])
    assert port_env(given.get("ports")) == {"PORT0": str(base), "PORT1": str(base + 2), "PORT2": str(base + 4),
                                            "PORTS": f"{base},{base + 2},{base + 4}"}
    with pytest.raises(InsufficientResources, match="ports: asked 2, 1 free"):
        a.allocate("c2", R("ports:2"))
    with pytest.raises(InsufficientResources, match="ports: asked 1.5; ask for a whole number or explicit ranges"):
        a.allocate("c2", R("ports:1.5"))


def test_allocations_are_checkpointed_so_a_restart_never_hands_a_port_out_twice(tmp_path, port_block):
    base = port_block(4)
    total = R(f"cpus:2;ports:[{base}-{base + 3}]")
    path = str(tmp_path / "allocations.json")
    first = Allocator(total, path, HostPorts()).allocate("c1", R("ports:2;cpus:1"))

    restarted = Allocator(total, path, HostPorts())
    assert restarted.held == {"c1": first}
    second = restarted.allocate("c2", R("ports:2"))
    assert not (second.get("ports") & first.get("ports"))
    with pytest.raises(InsufficientResources, match="ports: asked 1, none free"):
        Allocator(total, path, HostPorts()).allocate("c3", R("ports:1"))

    again = Allocator(total, path)
    assert again.retain(["c2"]) == ["c1"]                     # recovery found only c2
    assert Allocator(total, path).free() == R("cpus:2") + R(f"ports:[{base}-{base + 3}]") - second


def test_a_damaged_checkpoint_names_the_file(tmp_path):
    path = tmp_path / "allocations.json"
    path.write_text('{"c1": [{"name": "cpus"')
    with pytest.raises(DamagedFile, match=f"{path}: not valid JSON"):
        Allocator(R("cpus:1"), str(path))
    path.write_text('{"c1": [{"name": "cpus", "type": "SCALAR"}]}')
    with pytest.raises(DamagedFile, match=f"{path}: resource 0 \\(cpus\\)"):
        Allocator(R("cpus:1"), str(path))


def test_what_is_held_can_come_from_elsewhere_and_is_mirrored(tmp_path):
    path = tmp_path / "allocations.json"
    path.write_text("{torn")                                     # a mirror is never read back
    held = {"c1": R("cpus:1;ports:[5-6]")}
    a = Allocator(R("cpus:2;ports:[5-9]"), str(path), held=held, durable=False)
    assert a.free() == R("cpus:1;ports:[7-9]")
    assert Allocator(R("cpus:2;ports:[5-9]"), str(path)).held == held


def test_a_number_of_set_items_is_picked_and_whole_units_are_named():
    a = Allocator(R("fpgas:{fpga10,fpga2,fpga1};gpus:2"), units={"gpus": ["0", "1"]})
    assert a.allocate("c1", R("fpgas:2;gpus:1")) == R("fpgas:{fpga1,fpga2};gpus:1")    # fpga2 before fpga10
    assert a.given_units("c1") == {"gpus": ["0"]}
    assert a.allocate("c2", R("gpus:1")) == R("gpus:1") and a.given_units("c2") == {"gpus": ["1"]}
    with pytest.raises(InsufficientResources, match=r"fpgas: asked 2, 1 free; gpus: asked 1, none free$"):
        a.allocate("c3", R("fpgas:2;gpus:1"))
    with pytest.raises(InsufficientResources, match="fpgas: asked 0.5; ask for a whole number or explicit items"):
        a.allocate("c3", R("fpgas:0.5"))
    a.release("c1")
    a.allocate("c3", R("gpus:1"))
    assert a.given_units("c3") == {"gpus": ["0"]}         # the unit c1 freed, not c2's


def test_units_held_before_a_restart_are_not_given_again():
    a = Allocator(R("gpus:3"), units={"gpus": ["0", "1", "2"]},
                  held={"c1": R("gpus:1"), "gone": R("gpus:1")},
                  assigned={"c1": {"gpus": ["1"]}, "gone": {"gpus": ["0"]}})
    a.retain(["c1"])
    a.allocate("c2", R("gpus:2"))
    assert a.given_units("c2") == {"gpus": ["0", "2"]}
    with pytest.raises(InsufficientResources, match="gpus: asked 0.5; gpus are given as whole units"):
        Allocator(R("gpus:1"), units={"gpus": ["0"]}).allocate("c", R("gpus:0.5"))
