"""filesystem/linux: a container with a root filesystem of its own (Mesos's filesystem/linux).

The rootfs (from the provisioner, or any directory a caller prepared) gets /proc, a read-only
/sys, a tmpfs /dev with the usual devices, devpts and shm, the host's /etc/hosts and
/etc/resolv.conf and its own /etc/hostname, the sandbox at /mnt/mesos/sandbox and the
volumes asked for; init mounts them in its private mount namespace and pivots into the rootfs.
Without a rootfs the container shares the host's filesystem, as in Mesos.
"""

from __future__ import annotations

import os

from corral import linux
from corral.files import remove_tree, write_atomic
from corral.mounts import Mount
from corral.types import InvalidInput

from . import Isolator, LaunchInfo

SANDBOX = "/mnt/mesos/sandbox"
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
SYMLINKS = {"/dev/ptmx": "pts/ptmx", "/dev/fd": "/proc/self/fd", "/dev/stdin": "/proc/self/fd/0",
            "/dev/stdout": "/proc/self/fd/1", "/dev/stderr": "/proc/self/fd/2"}
_NOSUID_NODEV_NOEXEC = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC


def parse_volume(spec: str, sandbox: str) -> Mount:
    """HOST:CONTAINER[:ro|:rw] -> a bind Mount. A relative HOST is in the sandbox, as in Mesos,
    and made if missing; an absolute one must exist."""
    parts = spec.split(":")
    mode = parts.pop() if len(parts) == 3 else "rw"
    if len(parts) != 2 or mode not in ("ro", "rw") or not all(parts):
        raise InvalidInput(f"invalid volume {spec!r}: use HOST:CONTAINER[:ro]")
    host, container = parts
    if not os.path.isabs(container) or "\0" in spec:
        raise InvalidInput(f"invalid volume {spec!r}: the container path must be absolute")
    target = os.path.normpath(container)
    if target == "/" or target == "/proc" or target.startswith("/proc/"):
        # Over / nothing of the image is left to run; /proc is the container's own procfs
        # (and a bind over /proc/sys or /proc/sysrq-trigger would be a way out), as in runc.
        raise InvalidInput(f"invalid volume {spec!r}: a volume cannot be mounted at {target}")
    if os.path.isabs(host):
        if not os.path.exists(host):
            raise InvalidInput(f"invalid volume {spec!r}: {host} does not exist")
    else:
        host = os.path.normpath(os.path.join(sandbox, host))
        if not host.startswith(sandbox + os.sep):
            raise InvalidInput(f"invalid volume {spec!r}: a relative host path must stay in the sandbox")
        os.makedirs(host, exist_ok=True)
        # A sandbox kept from an earlier container of this id may hold its task's symlinks:
        # mount(2) would follow one to anywhere on the host.
        if not os.path.realpath(host).startswith(os.path.realpath(sandbox) + os.sep):
            raise InvalidInput(f"invalid volume {spec!r}: a relative host path must stay in the sandbox "
                               f"(a symlink there leads out of it)")
    return Mount(host, container, flags=linux.MS_BIND | linux.MS_REC, readonly=mode == "ro")


class LinuxFilesystemIsolator(Isolator):

    def _etc_dir(self, container_id: str) -> str:
        return os.path.join(self.flags.runtime_dir, "isolators", "filesystem", container_id)

    def prepare(self, container_id, config):
        if not config.rootfs:
            if config.volumes:
                raise InvalidInput("--volume needs a container image (a root filesystem)")
            return None
        sandbox = os.path.join(self.flags.work_dir, "containers", container_id)
        volumes = [parse_volume(v, sandbox) for v in config.volumes]
        etc = self._etc_dir(container_id)
        os.makedirs(etc, exist_ok=True)
        hostname = config.hostname or os.uname().nodename     # gethostname(2), without importing socket
        write_atomic(os.path.join(etc, "hostname"), hostname + "\n")
        write_atomic(os.path.join(etc, "hosts"),
                     _read("/etc/hosts") or f"127.0.0.1 localhost\n::1 localhost\n127.0.1.1 {hostname}\n")
        write_atomic(os.path.join(etc, "resolv.conf"), _read("/etc/resolv.conf") or "")
        mounts = [
            Mount("proc", "/proc", "proc", _NOSUID_NODEV_NOEXEC),
            Mount("sysfs", "/sys", "sysfs", _NOSUID_NODEV_NOEXEC | linux.MS_RDONLY),
            Mount("tmpfs", "/dev", "tmpfs", linux.MS_NOSUID, "mode=755,size=65536k"),
            *(Mount(f"/dev/{name}", f"/dev/{name}", flags=linux.MS_BIND) for name in DEVICES),
            Mount("devpts", "/dev/pts", "devpts", linux.MS_NOSUID | linux.MS_NOEXEC,
                  "newinstance,ptmxmode=0666,mode=0620"),
            Mount("shm", "/dev/shm", "tmpfs", _NOSUID_NODEV_NOEXEC, "mode=1777,size=65536k"),
            *(Mount(os.path.join(etc, name), f"/etc/{name}", flags=linux.MS_BIND)
              for name in ("hostname", "hosts", "resolv.conf")),
            Mount(sandbox, SANDBOX, flags=linux.MS_BIND | linux.MS_REC),
            *volumes,
        ]
        return LaunchInfo(rootfs=config.rootfs, mounts=mounts, symlinks=dict(SYMLINKS),
                          env={"MESOS_SANDBOX": SANDBOX}, working_dir=SANDBOX)

    def cleanup(self, container_id):
        remove_tree(self._etc_dir(container_id))


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None
