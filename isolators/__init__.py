"""Isolators: each owns one concern of a container's isolation (Mesos: mesos::slave::Isolator).

The interface is Mesos's, made loop-agnostic so that the CLI's cold path needs no asyncio:
methods are plain calls that do a few system calls each, and `watch` hands back a `Watch`
(a file descriptor or a polling interval plus a check) that either a blocking poll() or an
asyncio loop can wait on.
"""

from __future__ import annotations

from corral.record import Record
from corral.types import ContainerConfig, Limitation, Resources, check_cgroups_root

TYPE_CHECKING = False           # typing.TYPE_CHECKING, without importing typing on the launch path
if TYPE_CHECKING:
    from collections.abc import Callable

    from corral.confine import Confinement
    from corral.mounts import Mount


class LaunchInfo(Record):
    """What isolators ask of the launch (Mesos: ContainerLaunchInfo)."""
    env: dict[str, str] = dict
    namespaces: set[str] = set     # "pid", "ipc", "uts", ...
    hostname: str | None = None
    rootfs: str | None = None              # the container's root filesystem, a host directory
    rootfs_mount: Mount | None = None      # what to mount at `rootfs` first (an overlay, say)
    mounts: list[Mount] = list             # in order, inside the rootfs
    symlinks: dict[str, str] = dict        # path in the rootfs -> what the link points to
    working_dir: str | None = None         # the task's default working directory in the rootfs
    confinement: Confinement | None = None     # applied by init before exec
    # cgroups (corral.cgroups) made by prepare() that init joins itself, first thing after its
    # fork (Launcher.fork): no process of the container is moved by another (see join_files)
    cgroups: list = list

    def merge(self, other: "LaunchInfo | None") -> None:
        """Add `other`'s asks to these; `other` never changes (an isolator may hand the same
        LaunchInfo to every launch)."""
        if other is None:
            return
        self.env.update(other.env)
        self.namespaces |= other.namespaces
        self.mounts += other.mounts
        self.cgroups += other.cgroups
        self.symlinks.update(other.symlinks)
        for name in ("hostname", "rootfs", "rootfs_mount", "working_dir"):
            setattr(self, name, getattr(other, name) or getattr(self, name))
        if other.confinement is not None:
            if self.confinement is None:
                from corral.confine import Confinement
                self.confinement = Confinement()
            self.confinement.merge(other.confinement)


class Watch(Record):
    """A limitation to wait for: readable `fd`, or every `interval` seconds, run `check`.

    check() returns the Limitation once the container broke its limit, else None. It must also
    answer correctly when called after the fact by another process (from counters, not events),
    so that whoever finds a container ended can say why.
    """
    check: Callable[[], Limitation | None]
    fd: int | None = None
    interval: float | None = None
    close: Callable[[], None] = lambda: None


class Isolator:
    """Base class: every method is optional; cleanup must accept ids it never prepared.

    Isolators keep no state in memory (what they need is in cgroups and files), so, unlike
    Mesos's, they have no recover(): after a restart, the containers' own files say it all;
    the cleanup of an orphan (a container no runtime dir knows) is its cleanup(). (What a
    launch's prepare() leaves for its forked() and isolate(), in the same process, is the one
    exception: the cgroups isolators limit their cgroups after the fork, so that init starts
    sooner.)"""

    name: str = ""

    def __init__(self, flags: "IsolatorFlags"):
        self.flags = flags
        self.peers: list[Isolator] = []      # the isolators of the same containers, this one among them

    @classmethod
    def check_resources(cls, flags: "IsolatorFlags", resources: dict) -> dict[str, list[str] | None]:
        """At the agent's start, before any instance exists: the custom resources this isolator
        manages (gpu/nvidia: gpus; a plug-in: fpgas), each with, where it is a scalar given as
        whole devices, the names of its units (gpus -> ['0', '1']: the agent offers their number
        and gives a container asking for gpus:1 one of them by name), else None. `resources`:
        the agent's, name -> a float, a frozenset of items or a corral.ranges.Ranges. Raise
        InvalidInput (one line) where the host cannot back them: the agent does not start. A
        custom resource no isolator manages is offered and accounted only."""
        return {}

    def devices(self, container_id: str, config: ContainerConfig) -> list:
        """The devices (isolators.devices.Device) that `config.resources.custom` gives the
        container of this isolator's resources: cgroups/devices lets the container use them
        and linux/devices makes their nodes in its /dev. A function of `config` alone (asked
        only of a container with custom resources)."""
        return []

    def prepare(self, container_id: str, config: ContainerConfig) -> LaunchInfo | None:
        """Before the container's init is forked: set up, and say what the launch needs (the
        cgroups init is to join among it)."""

    def forked(self, container_id: str) -> None:
        """The container's supervisor is forked and starting init, whose pid isolate() gets next:
        what needs no process is best done here (limit the cgroups init joins), while the launcher
        would otherwise only wait for init."""

    def isolate(self, container_id: str, pid: int) -> None:
        """The init `pid` exists and waits; finish its isolation before it execs the task (a
        cgroup is best joined by init itself: LaunchInfo.cgroups)."""

    def watch(self, container_id: str) -> Watch | None:
        """How to learn that the container broke a limit."""

    def limitation(self, container_id: str) -> Limitation | None:
        """Whether the container broke a limit, answered from counters, after the fact too."""

    def update(self, container_id: str, resources: Resources) -> None:
        """Change the container's limits."""

    def usage(self, container_id: str) -> dict:
        """ResourceStatistics fields this isolator knows."""
        return {}

    def cleanup(self, container_id: str) -> None:
        """Undo prepare/isolate; called after every process of the container is gone."""


class IsolatorFlags(Record):
    """The agent/CLI settings isolators read."""
    cgroups_root: str = "corral"
    cgroups_enable_cfs: bool = False
    # The hierarchy the launcher tracks containers in ('unified' or 'freezer'; None: unknown):
    # it has placed init in that container cgroup before the isolators' isolate().
    launcher_tracking: str | None = None
    work_dir: str = "/var/lib/corral"
    runtime_dir: str = "/run/corral"
    # network/ports: the agent's ports, [[begin, end], ...]; listening on one of them without
    # having been given it ends the container when enforcement is on.
    container_ports_isolated_range: list = list
    enforce_container_ports: bool = False
    container_ports_watch_interval: float = 30.0
    # Confinement (docs/confinement.md). Capabilities as names (CHOWN, ...); None: the defaults.
    effective_capabilities: list | None = None
    bounding_capabilities: list | None = None
    seccomp_config_dir: str | None = None
    seccomp_profile_name: str | None = None    # in seccomp_config_dir; None: corral's default profile
    allowed_devices: list = list               # devices every container may use, beyond the defaults
    cgroups_pids_limit: int | None = None      # the pids limit of a container that asks for none
    # gpu/nvidia (docs/gpus.md): the GPUs offered (NVML indices; None: all), and which image
    # containers get the driver's volume ("needed": those whose image asks for it; "all").
    nvidia_gpu_devices: list | None = None
    nvidia_volumes: str = "needed"

    def __post_init__(self):
        check_cgroups_root(self.cgroups_root)     # isolators join it under every cgroup mount


def __getattr__(name: str):
    """`from isolators import Mount`: isolators describe their mounts with it. Imported on first
    use, as it brings ctypes, which a docker run through the CLI has no use for."""
    if name == "Mount":
        from corral.mounts import Mount
        return Mount
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
