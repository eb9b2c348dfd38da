"""namespaces/pid, namespaces/ipc and namespaces/uts: each asks the launcher for one namespace."""

from __future__ import annotations

from . import Isolator, LaunchInfo


class PidNamespaceIsolator(Isolator):
    """The container's init is PID 1 of a new pid namespace, with its own /proc."""

    def prepare(self, container_id, config):
        return LaunchInfo(namespaces={"pid"})


class IpcNamespaceIsolator(Isolator):
    def prepare(self, container_id, config):
        return LaunchInfo(namespaces={"ipc"})


class UtsNamespaceIsolator(Isolator):
    """A hostname of its own: the container's id unless the config names one."""

    def prepare(self, container_id, config):
        return LaunchInfo(namespaces={"uts"}, hostname=config.hostname or container_id[:63])
