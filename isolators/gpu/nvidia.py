"""gpu/nvidia: NVIDIA GPUs as the agent's `gpus` resource, isolated as Mesos's isolator does.

At the agent's start (check_resources), Mesos's rules: without --nvidia_gpu_devices and without
gpus in --resources, every GPU NVML finds is offered; --nvidia_gpu_devices=[0,1] offers those
and then --resources must say gpus:2; gpus in --resources without --nvidia_gpu_devices is
refused. A host without NVIDIA's driver (or without nvidia-ml-py) stops the agent with one line.

A container given gpus:1 is given one GPU by index (the agent's allocator picks it): its devices
cgroup allows that GPU's node (/dev/nvidia<minor>) and the driver's control nodes (nvidiactl,
nvidia-uvm, nvidia-uvm-tools, nvidia-modeset, those present), which linux/devices makes in its
/dev; NVIDIA_VISIBLE_DEVICES names the GPU's index, as NVIDIA's container runtime reads it. A
container with an image gets the driver's user-space binaries and libraries read-only at
/usr/local/nvidia (Mesos's volume), with PATH and LD_LIBRARY_PATH, when the image has the label
com.nvidia.volumes.needed or --nvidia_volumes=all. `usage` adds each GPU's utilisation and
memory (NVML), which Mesos does not report.

A container's GPUs are kept in <runtime-dir>/isolators/gpu-nvidia/<id>.json, so that any
process can measure a container it did not launch: the agent's, whose launch server prepared
it, and a restarted agent's.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from corral import linux
from corral.files import read_json, remove_tree, write_json
from corral.types import InvalidInput

from .. import Isolator, LaunchInfo
from ..devices import Device, host_device
from . import nvml

NVIDIA_MAJOR = 195
CONTROL_DEVICES = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset")
VOLUME = "/usr/local/nvidia"
VOLUME_LABEL = "com.nvidia.volumes.needed"
# What Mesos's NvidiaVolume carries (the compute part): the driver's tools and libraries.
BINARIES = ("nvidia-smi", "nvidia-debugdump", "nvidia-persistenced", "nvidia-cuda-mps-control",
            "nvidia-cuda-mps-server")
LIBRARIES = ("libnvidia-ml.so", "libcuda.so", "libnvidia-ptxjitcompiler.so", "libnvidia-fatbinaryloader.so",
             "libnvidia-opencl.so", "libnvidia-compiler.so", "libnvidia-nvvm.so", "libnvidia-cfg.so",
             "libnvidia-allocator.so", "libnvcuvid.so", "libnvidia-encode.so")


def check_gpus(flags, declared) -> list[str]:
    """The indices of the GPUs the agent offers, by Mesos's rules; InvalidInput in one line."""
    wanted = flags.nvidia_gpu_devices
    if declared is not None and not isinstance(declared, float):
        raise InvalidInput("gpus in --resources must be a number of GPUs, such as gpus:2")
    if declared is not None and declared != int(declared):
        raise InvalidInput(f"gpus in --resources must be a whole number, not {declared:g}")
    if wanted is not None and declared is None:
        raise InvalidInput("--nvidia_gpu_devices needs gpus in --resources, as many as it names")
    if wanted is None and declared is not None:
        raise InvalidInput("gpus in --resources needs --nvidia_gpu_devices, naming which GPUs")
    found = {gpu.index for gpu in nvml.gpus()}
    if wanted is None:
        return [str(index) for index in sorted(found)]
    if len(wanted) != declared:
        raise InvalidInput(f"--nvidia_gpu_devices names {len(wanted)} GPUs, and --resources says gpus:{declared:g}")
    missing = [index for index in wanted if index not in found]
    if missing:
        raise InvalidInput(f"--nvidia_gpu_devices: no GPU {', '.join(map(str, missing))} on this host "
                           f"(NVML finds {len(found)})")
    return [str(index) for index in wanted]


class NvidiaGpuIsolator(Isolator):
    def __init__(self, flags):
        super().__init__(flags)
        self._gpus: dict[int, nvml.Gpu] | None = None      # NVML's, read on first use

    @classmethod
    def check_resources(cls, flags, resources):
        return {"gpus": check_gpus(flags, resources.get("gpus"))}

    def _gpu(self, index: int) -> nvml.Gpu:
        if self._gpus is None:
            self._gpus = {gpu.index: gpu for gpu in nvml.gpus()}
        return self._gpus[index]

    @staticmethod
    def _indices(config) -> list[int]:
        return [int(index) for index in (config.resources.custom or {}).get("gpus") or ()]

    def devices(self, container_id, config):
        indices = self._indices(config)
        if not indices:
            return []
        nodes = [Device("c", NVIDIA_MAJOR, minor, "rwm", f"/dev/nvidia{minor}", f"/dev/nvidia{minor}")
                 for minor in (self._gpu(index).minor for index in indices)]
        return nodes + [host_device(path) for path in CONTROL_DEVICES if os.path.exists(path)]

    def prepare(self, container_id, config):
        indices = self._indices(config)
        if not indices:
            return None
        path = self._path(container_id)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_json(path, indices)
        info = LaunchInfo(env={"NVIDIA_VISIBLE_DEVICES": ",".join(map(str, indices))})
        if config.rootfs and (self.flags.nvidia_volumes == "all" or VOLUME_LABEL in (config.image_labels or {})):
            from corral.mounts import Mount
            info.mounts.append(Mount(self._volume(), VOLUME, flags=linux.MS_BIND | linux.MS_REC, readonly=True))
            path = config.env.get("PATH") or "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
            library_path = config.env.get("LD_LIBRARY_PATH")
            info.env.update(PATH=f"{path}:{VOLUME}/bin",
                            LD_LIBRARY_PATH=f"{VOLUME}/lib64" + (f":{library_path}" if library_path else ""))
        return info

    def _volume(self) -> str:
        """The driver's binaries and libraries, copied once per driver version (Mesos's NvidiaVolume)."""
        directory = os.path.join(self.flags.runtime_dir, "gpu", f"nvidia-{nvml.driver_version()}")
        if not os.path.isdir(directory):
            building = f"{directory}.{os.getpid()}"
            remove_tree(building)
            os.makedirs(os.path.join(building, "bin"))
            os.makedirs(os.path.join(building, "lib64"))
            for name in BINARIES:
                found = shutil.which(name)
                if found:
                    shutil.copy2(found, os.path.join(building, "bin", name))
            for soname, path in _driver_libraries():
                real = os.path.realpath(path)
                target = os.path.join(building, "lib64", os.path.basename(real))
                if not os.path.exists(target):
                    shutil.copy2(real, target)
                if not os.path.lexists(os.path.join(building, "lib64", soname)):
                    os.symlink(os.path.basename(real), os.path.join(building, "lib64", soname))
            try:
                os.rename(building, directory)
            except OSError:            # another process built it meanwhile
                remove_tree(building)
        return directory

    def _path(self, container_id: str) -> str:
        return os.path.join(self.flags.runtime_dir, "isolators", "gpu-nvidia", f"{container_id}.json")

    def given(self, container_id: str) -> list[int]:
        """The indices of the GPUs the container was given, as its prepare() recorded them."""
        return read_json(self._path(container_id), default=[])

    def usage(self, container_id):
        indices = self.given(container_id)
        return {"gpus": nvml.usage(indices)} if indices else {}

    def cleanup(self, container_id):
        try:
            os.unlink(self._path(container_id))
        except FileNotFoundError:
            pass


def _driver_libraries() -> list[tuple[str, str]]:
    """(soname, path) of the driver's 64-bit libraries that ldconfig knows."""
    listing = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    found = []
    for line in listing.splitlines():
        name, _, path = line.strip().partition(" => ")
        soname = name.split(" ")[0]
        if "x86-64" in name or "AArch64" in name or "64bit" in name:
            if any(soname.startswith(library) for library in LIBRARIES):
                found.append((soname, path))
    return found
