"""The shared vocabulary, in Mesos's words: container ids, configs, terminations, limitations.

Kept free of heavy imports: the CLI's cold launch and exec paths import it. Not even `re` or
`signal` (which imports enum): each costs a cold `corral exec` milliseconds, so the few checks
that need them import them where they run.
"""

from __future__ import annotations

import os

from .record import Record

# TaskState names (mesos.proto).
TASK_STARTING = "TASK_STARTING"
TASK_RUNNING = "TASK_RUNNING"
TASK_FINISHED = "TASK_FINISHED"
TASK_FAILED = "TASK_FAILED"
TASK_KILLED = "TASK_KILLED"
TASK_LOST = "TASK_LOST"

# TaskStatus.Reason names used by the containerization layer.
REASON_CONTAINER_LIMITATION = "REASON_CONTAINER_LIMITATION"
REASON_CONTAINER_LIMITATION_MEMORY = "REASON_CONTAINER_LIMITATION_MEMORY"
REASON_CONTAINER_LIMITATION_DISK = "REASON_CONTAINER_LIMITATION_DISK"
REASON_CONTAINER_LAUNCH_FAILED = "REASON_CONTAINER_LAUNCH_FAILED"
REASON_EXECUTOR_TERMINATED = "REASON_EXECUTOR_TERMINATED"

# Containerizer.launch answers (Mesos: Containerizer::LaunchResult).
LAUNCHED = "LAUNCHED"
NOT_SUPPORTED = "NOT_SUPPORTED"
ALREADY_LAUNCHED = "ALREADY_LAUNCHED"

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class CorralError(Exception):
    """An error with a message fit for one line in front of a user."""


class InvalidInput(CorralError):
    """The caller asked for something malformed (CLI exit 2, HTTP 400)."""


class Unavailable(CorralError):
    """Something a containerizer depends on (dockerd, say) is down or silent: nothing was
    changed, and the same call may succeed later (HTTP 503)."""


class NoSuchContainer(CorralError):
    def __init__(self, container_id: str):
        super().__init__(f"no such container: {container_id}")
        self.container_id = container_id


class NotRunning(CorralError):
    """The container is known, but nothing of it runs (it has ended, or has not started yet)."""

    def __init__(self, container_id: str, state: str = "has ended"):
        super().__init__(f"container {container_id} {state}: nothing runs in it to exec into")
        self.container_id = container_id


class ExecFailed(CorralError):
    """An exec's command could not be started in the container: `exit_code` is what a shell
    reports for it (127: not found, 126: cannot run)."""

    def __init__(self, message: str, exit_code: int = 126):
        super().__init__(message)
        self.exit_code = exit_code


class ContainerExists(CorralError):
    def __init__(self, container_id: str):
        super().__init__(f"container already exists: {container_id}")
        self.container_id = container_id


# Mesos ContainerID values become directory and cgroup names: keep them to a safe alphabet.
_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_NAME_CHARS = _ALNUM | frozenset("_.-")


def _is_name(value, longest: int) -> bool:
    """Whether `value` is 1 to `longest` of A-Z a-z 0-9 _ . -, starting with a letter or digit."""
    return (isinstance(value, str) and 0 < len(value) <= longest and value[0] in _ALNUM
            and all(c in _NAME_CHARS for c in value))


def check_container_id(value: str) -> str:
    if not _is_name(value, 128):
        raise InvalidInput(
            f"invalid container id {value!r}: use 1-128 of A-Z a-z 0-9 _ . -, starting with a letter or digit")
    return value


def check_cgroups_root(value: str) -> str:
    """A cgroups root is a relative name of plain components ('corral', 'system.slice/corral'):
    it is joined under every cgroup mount, so an absolute path, '..', '.', an empty component
    or a control character would put corral's cgroups (or plain files) anywhere on the host."""
    parts = value.split("/") if isinstance(value, str) else [""]
    if any(part in ("", ".", "..") or not part.isprintable() for part in parts):
        raise InvalidInput(f"invalid cgroups root {value!r}: use a relative name such as 'corral' "
                           f"(components separated by '/', none empty, '.' or '..')")
    return value


# The largest limits a container may ask for: beyond them the kernel's counters overflow.
# cpus: CFS quotas of 100 ms per CPU stay far below the kernel's (2^44 us); shares are clamped
# to the kernel's range in corral/cpu.py. mem: the kernel's page counters and docker's Memory
# are signed 64-bit byte counts (16777216T was written as 2^64 and wrapped to 0).
MAX_CPUS = 65536
# The longest timeout or interval a flag may give: a week (poll(2) takes at most 2^31 ms, 24 days;
# 1e308 seconds was an OverflowError).
MAX_SECONDS = 7 * 86400
MAX_MEM_MB = 2 ** 43 - 1        # 8 EiB less 1 MiB


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_cpus(value: float) -> float:
    if not _number(value) or not 0 < value <= MAX_CPUS:      # NaN fails both comparisons
        raise InvalidInput(f"cpus must be a positive number at most {MAX_CPUS}, not {value!r}")
    return value


def check_mem_mb(value: float) -> float:
    if not _number(value) or not 0 < value <= MAX_MEM_MB:
        raise InvalidInput(f"mem must be a positive number of MB at most {MAX_MEM_MB} (8 EiB), not {value!r}")
    return value


MAX_LOG_FILES = 100


def check_log_cap(max_size: int | None, max_files: int | None) -> None:
    """A log cap as Docker's json-file takes it: a size of at least one byte; a count of files
    (1 to MAX_LOG_FILES) only with a size."""
    if max_size is not None and (not isinstance(max_size, int) or isinstance(max_size, bool)
                                 or not 0 < max_size < 1 << 63):
        raise InvalidInput(f"invalid log max size {max_size!r}: give a number of bytes above 0")
    if max_files is not None:
        if not isinstance(max_files, int) or isinstance(max_files, bool) or not 1 <= max_files <= MAX_LOG_FILES:
            raise InvalidInput(f"invalid log max files {max_files!r}: give 1 to {MAX_LOG_FILES}")
        if max_size is None:
            raise InvalidInput("a log max files needs a log max size")


# The kernel's PID_MAX_LIMIT: pids.max refuses more (EINVAL; ERANGE past 2^63).
MAX_PIDS = 4 * 1024 * 1024


def check_pids_limit(value: int) -> int:
    if type(value) is not int or not 1 <= value <= MAX_PIDS:
        raise InvalidInput(f"the pids limit must be an integer from 1 to {MAX_PIDS}, not {value!r}")
    return value


class Resources(Record):
    """The resources the Mesos containerizer isolates. None means unlimited."""
    cpus: float | None = None
    mem_mb: float | None = None
    ports: list | None = None       # the host ports given to the container: [[begin, end], ...]
    # Any other resource given (the agent's custom ones): name -> the devices given, as a list
    # of names (gpus -> ['0'] GPU indices, fpgas -> ['fpga0'] set items), or a number (hugepages).
    custom: dict | None = None

    def __post_init__(self):
        if self.cpus is not None:
            check_cpus(self.cpus)
        if self.mem_mb is not None:
            check_mem_mb(self.mem_mb)
        if self.ports is not None and not all(
                isinstance(r, (list, tuple)) and len(r) == 2 and all(type(p) is int and 0 <= p < 65536 for p in r)
                and r[0] <= r[1] for r in self.ports):
            raise InvalidInput(f"ports must be ranges [[begin, end], ...] of ports 0-65535, not {self.ports}")


# What sethostname(2) takes (64 bytes) in the alphabet of container ids, the default hostname.
_HOSTNAME_LENGTH = 64


class ContainerConfig(Record):
    """What to run and how: the parts of Mesos's ContainerConfig that corral honours."""
    argv: list[str]
    env: dict[str, str] = dict
    resources: Resources = Resources
    isolation: list[str] = list
    workdir: str | None = None          # relative paths are relative to the sandbox
    user: str | None = None
    hostname: str | None = None
    cgroups_enable_cfs: bool = False
    containerizer: str | None = None    # which containerizer the caller asked for, if any
    image: dict | None = None           # {"type": "DOCKER"|"APPC", "name": ...} when the task has one
    rootfs: str | None = None           # a root filesystem ready on the host (the provisioner's, or a caller's)
    image_labels: dict = dict           # the image's labels, once provisioned (gpu/nvidia reads one)
    volumes: list[str] = list           # HOST:CONTAINER[:ro] bind mounts, with a root filesystem or docker
    network: str | None = None          # docker: host (the default), bridge, none or a network's name
    ports: list[str] = list             # docker, off the host network: HOST_PORT:CONTAINER_PORT[/udp]
    # Confinement (docs/confinement.md): what a container asks beyond, or short of, the defaults.
    privileged: bool = False            # no confinement isolators at all (Docker's --privileged)
    cap_add: list[str] = list           # Docker's --cap-add/--cap-drop: names, with or without CAP_, or ALL
    cap_drop: list[str] = list
    effective_capabilities: list[str] | None = None   # Mesos's LinuxInfo: capability names
    bounding_capabilities: list[str] | None = None
    seccomp_profile: str | None = None  # a profile file (Docker's/OCI's JSON), or "unconfined"
    devices: list[str] = list           # HOST[:CONTAINER][:rwm]
    pids_limit: int | None = None
    rlimits: list[dict] = list          # Mesos's RLimitInfo: [{"type": "RLMT_NOFILE", "soft": N, "hard": N}]
    # Interactive I/O (docs/io.md): the task's stdin open to attached clients (Docker's -i), a
    # pseudo-terminal for it (Docker's -t, Mesos's ContainerInfo.tty_info), and a cap on each of
    # its output files, rotated over log_max_files files (Docker's json-file max-size, max-file).
    stdin: bool = False
    tty: bool = False
    window: list[int] | None = None     # the tty's rows and columns until a client sets its own (TTYInfo.window_size)
    attach: bool = False                # a client attaches at once (a foreground run): no output is read before
    log_max_size: int | None = None     # bytes
    log_max_files: int | None = None    # files per stream, the one written included (default 1)

    def __post_init__(self):
        # With an image the command may come from its Entrypoint and Cmd.
        if not self.argv and not self.image:
            raise InvalidInput("a command is required")
        if not all(isinstance(a, str) for a in self.argv) or (self.argv and not self.argv[0]):
            raise InvalidInput("the command must be a list of strings, the first not empty")
        for key in self.env:
            if not key or "=" in key or "\0" in key:
                raise InvalidInput(f"invalid environment variable name {key!r}")
        if self.pids_limit is not None:
            check_pids_limit(self.pids_limit)
        if self.workdir and not os.path.isabs(self.workdir) and os.path.normpath(self.workdir).split("/")[0] == "..":
            raise InvalidInput(f"invalid workdir {self.workdir!r}: a relative workdir is in the sandbox, "
                               f"and '..' may not leave it")
        if self.rootfs is not None and not os.path.isabs(self.rootfs):
            raise InvalidInput(f"invalid root filesystem {self.rootfs!r}: give an absolute path")
        check_log_cap(self.log_max_size, self.log_max_files)
        if self.hostname is not None and not _is_name(self.hostname, _HOSTNAME_LENGTH):
            raise InvalidInput(f"invalid hostname {self.hostname!r}: use 1-64 of A-Z a-z 0-9 _ . -, "
                               f"starting with a letter or digit (the kernel keeps 64 bytes)")

    @classmethod
    def from_dict(cls, data: dict) -> "ContainerConfig":
        data = dict(data)
        data["resources"] = Resources(**(data.get("resources") or {}))
        return cls(**data)


class ExecConfig(Record):
    """A command to run in a running container (`corral exec`, LAUNCH_NESTED_CONTAINER_SESSION):
    it gets the container's environment and confinement, plus what is asked here."""
    argv: list[str]
    env: dict[str, str] = dict          # added to the task's environment
    user: str | None = None             # a name or uid[:gid] of the container's; None: the task's
    workdir: str | None = None          # in the container; relative to the task's working directory
    tty: bool = False                   # the command gets a terminal (the caller relays it: Execution)
    interactive: bool = False           # the command reads the caller's stdin (else /dev/null)
    size: tuple | None = None           # the terminal's first (rows, columns)

    def __post_init__(self):
        if not self.argv or not all(isinstance(a, str) for a in self.argv) or not self.argv[0]:
            raise InvalidInput("the command must be a list of strings, the first not empty")
        if any("\0" in a for a in self.argv):
            raise InvalidInput("the command may not hold a NUL byte")
        for key, value in self.env.items():
            if not key or "=" in key or "\0" in key or "\0" in value:
                raise InvalidInput(f"invalid environment variable name {key!r}")
        if self.user is not None and not _is_user(self.user):
            raise InvalidInput(f"invalid user {self.user!r}: give a name or uid, optionally :group or :gid")
        if self.workdir is not None and (not self.workdir or "\0" in self.workdir):
            raise InvalidInput(f"invalid workdir {self.workdir!r}")


def _is_user(value: str) -> bool:
    import re
    return re.fullmatch(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*(:[A-Za-z0-9_.][A-Za-z0-9_.-]*)?", value) is not None


class Limitation(Record):
    """An isolator's verdict that a container broke a limit (Mesos: ContainerLimitation)."""
    reason: str
    message: str


class Termination(Record):
    """How a container ended (Mesos: ContainerTermination), plus corral's decoded wait status."""
    container_id: str
    exit_status: int | None        # the raw wait status, as waitpid(2) returns it; None when unknown
    state: str
    reason: str | None = None
    message: str = ""

    @property
    def exit_code(self) -> int | None:
        if self.exit_status is not None and os.WIFEXITED(self.exit_status):
            return os.WEXITSTATUS(self.exit_status)
        return None

    @property
    def signal(self) -> int | None:
        if self.exit_status is not None and os.WIFSIGNALED(self.exit_status):
            return os.WTERMSIG(self.exit_status)
        return None

    def shell_exit_code(self) -> int:
        """What a shell would report: the exit code, or 128+N for a death by signal N."""
        if self.exit_code is not None:
            return self.exit_code
        if self.signal is not None:
            return 128 + self.signal
        return 1

    def to_dict(self) -> dict:
        data = super().to_dict()
        data["exit_code"] = self.exit_code
        data["signal"] = self.signal
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Termination":
        return cls(**{k: data.get(k) for k in ("container_id", "exit_status", "state", "reason", "message")})


def verdict(container_id: str, raw: int, error: str | None = None, limitation: "Limitation | None" = None,
            killed_with: int | None = None) -> Termination:
    """How an ended container is reported, whichever containerizer ran it: a launch error, else a
    broken limit, else a kill by corral that can have ended it (TASK_KILLED), else the command's
    own exit. Callers pass `killed_with` only for a kill recorded before the task's end."""
    if error:
        return Termination(container_id, raw, TASK_FAILED, REASON_CONTAINER_LAUNCH_FAILED, error)
    if limitation is not None:
        return Termination(container_id, raw, TASK_FAILED, limitation.reason, limitation.message)
    if killed_with and kill_can_have_ended(killed_with, raw):
        return Termination(container_id, raw, TASK_KILLED, None,
                           f"Killed by corral with {signal_name(killed_with)}; command {describe_wait_status(raw)}")
    if os.WIFEXITED(raw) and os.WEXITSTATUS(raw) == 0:
        return Termination(container_id, raw, TASK_FINISHED, None, "Command exited with status 0")
    return Termination(container_id, raw, TASK_FAILED, None, f"Command {describe_wait_status(raw)}")


def kill_can_have_ended(sig: int, raw: int | None) -> bool:
    """Whether corral's `sig` can have ended a task whose wait status is `raw`. SIGKILL cannot be
    caught: a task it ended died of it (docker reports that as exit code 128+9), and any other end
    came on the task's own, before the signal reached it. A catchable signal's handler may end
    the task in any way it chooses."""
    import signal
    if sig != signal.SIGKILL or raw is None:        # raw None: the end is unknown
        return True
    return ((os.WIFSIGNALED(raw) and os.WTERMSIG(raw) == signal.SIGKILL)
            or (os.WIFEXITED(raw) and os.WEXITSTATUS(raw) == 128 + signal.SIGKILL))


def describe_wait_status(status: int) -> str:
    if os.WIFEXITED(status):
        return f"exited with status {os.WEXITSTATUS(status)}"
    if os.WIFSIGNALED(status):
        return f"terminated by {signal_name(os.WTERMSIG(status))}"
    return f"wait status {status}"


def signal_name(number: int) -> str:
    import signal
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def parse_signal(text: str | int) -> int:
    """'TERM', 'SIGTERM', 'sigterm' or '15' to 15."""
    import signal
    raw = str(text).strip()
    if raw.isascii() and raw.isdigit():     # str.isdigit alone takes '²', which int() refuses
        number = int(raw)
        if 0 < number < signal.NSIG:
            return number
    else:
        name = raw.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        member = getattr(signal.Signals, name, None) if name.isidentifier() else None
        if member is not None:
            return int(member)
    raise InvalidInput(f"invalid signal {text!r}")


# ResourceStatistics field names (mesos.proto) that corral reports.
STATISTICS_FIELDS = (
    "timestamp", "processes", "threads",
    "cpus_user_time_secs", "cpus_system_time_secs", "cpus_limit",
    "cpus_nr_periods", "cpus_nr_throttled", "cpus_throttled_time_secs",
    "mem_total_bytes", "mem_rss_bytes", "mem_cache_bytes", "mem_limit_bytes",
)
