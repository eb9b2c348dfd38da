"""The agent's custom resources: anything in --resources beyond cpus, mem, disk and ports.

At start, each isolator of --isolation says which it manages (Isolator.check_resources:
gpu/nvidia's gpus, a plug-in's fpgas), checks the agent's value of them and names the units a
whole-unit scalar is made of (gpus -> the GPU indices). A custom resource no isolator manages is offered
and accounted only, as Mesos does (`gpgpus:1`), except `gpus`, which needs gpu/nvidia, as in Mesos.

At launch a container learns what it was given in `config.resources.custom`: the units of a
whole-unit scalar, the items of a set, the number of another scalar.
"""

from __future__ import annotations

from corral.types import InvalidInput
from corral.isolators import IsolatorFlags
from corral.isolators.registry import isolator_class

from .resources import DEFAULT_ROLE, Resources

BUILTIN = frozenset({"cpus", "mem", "disk", "ports"})


def settle(flags, total: Resources) -> tuple[Resources, dict[str, list[str]]]:
    """The agent's resources once its isolators have checked theirs (gpus added where NVML found
    some and --resources named none), and the units of each whole-unit resource. InvalidInput:
    the agent must not start."""
    isolator_flags = IsolatorFlags(nvidia_gpu_devices=flags.nvidia_gpu_devices, nvidia_volumes=flags.nvidia_volumes,
                                   cgroups_root=flags.cgroups_root, work_dir=flags.work_dir,
                                   runtime_dir=flags.runtime_dir)
    managers: dict[str, str] = {}
    units: dict[str, list[str]] = {}
    for name in flags.isolation:
        managed = isolator_class(name).check_resources(
            isolator_flags, {resource: total.get(resource) for resource in total.names()})
        for resource, names in managed.items():
            if resource in managers:
                raise InvalidInput(f"{resource} is managed by both {managers[resource]} and {name}")
            managers[resource] = name
            if names is None:
                continue
            declared = total.get(resource)
            if declared is None:
                total += Resources({(resource, DEFAULT_ROLE): float(len(names))})
            elif declared != len(names):
                raise InvalidInput(f"{name} found {len(names)} {resource}, and --resources says {declared:g}")
            units[resource] = [str(unit) for unit in names]
    if "gpus" in total.names() and "gpus" not in managers:
        raise InvalidInput("gpus in --resources needs the gpu/nvidia isolator: add it to --isolation, "
                           "or name the resource otherwise to have it offered and accounted only")
    return total, units


def given(resources: Resources, units: dict[str, list[str]]) -> dict:
    """What a container was given of the custom resources: name -> unit names, set items, or a number."""
    custom = {}
    for name in sorted(resources.names() - BUILTIN):
        value = resources.get(name)
        if name in units:
            custom[name] = units[name]
        elif isinstance(value, frozenset):
            custom[name] = sorted(value)
        elif isinstance(value, float):
            custom[name] = value
        else:
            custom[name] = value.to_list()
    return custom
