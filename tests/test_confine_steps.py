"""corral.confine's Steps: a confinement made ready once per process, applied by init with
system calls alone. Checked in forked children of the test, whose credentials die with them."""

from __future__ import annotations

from corral import confine
from corral.confine import Confinement, DeviceNode
from corral.isolators.capabilities import DEFAULT, numbers
from tests.childkit import in_child

PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE = 47, 2
CAP_NET_RAW = 13


def status(*names: str) -> dict[str, int]:
    fields = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line)
    return {name: int(fields[name], 16) for name in names}


def test_the_same_confinement_is_made_ready_once():
    def made():
        return Confinement(bounding=numbers(DEFAULT), effective=numbers(DEFAULT), no_new_privs=True,
                           masked_paths=("/proc/keys",), device_nodes=(DeviceNode("/dev/x", "c", 1, 3),))
    assert confine.steps(made()) is confine.steps(made())
    other = made()
    other.device_nodes = (DeviceNode("/dev/x", "c", 1, 5),)
    assert confine.steps(other) is not confine.steps(made())
    assert confine.steps(None) is None


def test_an_ambient_capability_the_launcher_had_is_gone():
    """Init makes no call to clear the ambient set: capset keeps of it only what is both
    permitted and inheritable, and the container's inheritable set is empty."""
    steps = confine.steps(Confinement(bounding=numbers(DEFAULT), effective=numbers(DEFAULT)))

    def child():
        from corral import linux
        mine = status("CapPrm")["CapPrm"]       # inheritable too, so that an ambient one can be raised
        linux.capset(linux.capset_args(effective=mine, permitted=mine, inheritable=mine))
        linux.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_RAW, what="raise")
        before = status("CapAmb")["CapAmb"]
        confine.confine(steps)
        return before, status("CapAmb", "CapInh", "CapEff", "CapBnd")
    before, after = eval(in_child(child))
    mask = sum(1 << n for n in numbers(DEFAULT))
    assert before == 1 << CAP_NET_RAW
    assert after == {"CapAmb": 0, "CapInh": 0, "CapEff": mask, "CapBnd": mask}
