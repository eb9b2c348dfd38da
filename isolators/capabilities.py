"""linux/capabilities: the task's capability sets, Docker's default set unless asked otherwise.

Which sets a container gets follows Mesos's linux/capabilities isolator:
  - the agent's bounding set (--bounding_capabilities; corral's default: Docker's default set)
    is the most any container may have; asking for more is refused (HTTP 400);
  - a container's bounding set is its LinuxInfo.bounding_capabilities, else its effective
    capabilities, else the agent's bounding set;
  - its effective set is its LinuxInfo.effective_capabilities, else the agent's
    --effective_capabilities, else its bounding set.
Docker's --cap-add/--cap-drop (the CLI's) then change both sets alike. A task run as another
user than root ends with no effective capabilities (the kernel clears them on setuid).
"""

from __future__ import annotations

from corral.types import InvalidInput

from . import Isolator, LaunchInfo

# linux/capability.h, in its order: the number of each is its index.
NAMES = ("CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
         "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
         "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
         "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
         "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
         "CHECKPOINT_RESTORE")
NUMBERS = {name: number for number, name in enumerate(NAMES)}
ALL = frozenset(NAMES)

# Docker's (moby's oci/caps) default set, the one runc's `runc spec` writes too.
DEFAULT = frozenset({"CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
                     "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE"})


def normalize(name: str) -> str:
    """'chown', 'CAP_CHOWN', 'CHOWN' -> 'CHOWN'; 'all' -> 'ALL'; else InvalidInput."""
    upper = name.strip().upper() if isinstance(name, str) else ""
    upper = upper[len("CAP_"):] if upper.startswith("CAP_") else upper
    if upper != "ALL" and upper not in NUMBERS:
        raise InvalidInput(f"unknown capability {name!r}")
    return upper


def names(values, what: str) -> frozenset:
    """A list of capability names (a Mesos CapabilityInfo's `capabilities`) as a set."""
    if not isinstance(values, (list, tuple, set, frozenset)):
        raise InvalidInput(f"{what} must be a list of capability names, not {values!r}")
    found = {normalize(v) for v in values}
    return ALL if "ALL" in found else frozenset(found)


def add_drop(base: frozenset, add: list[str], drop: list[str]) -> frozenset:
    """Docker's --cap-add/--cap-drop on `base`: ALL in drop empties it first, ALL in add fills it."""
    added, dropped = names(add, "--cap-add"), names(drop, "--cap-drop")
    result = set(base)
    if dropped == ALL:
        result = set()
    if added == ALL:
        result = set(ALL)
    return frozenset((result | (added if added != ALL else set())) - (dropped if dropped != ALL else set()))


def resolve(config, flags) -> tuple[frozenset, frozenset]:
    """(bounding, effective) names of the container, by the rules in the module's docstring."""
    agent_bounding = names(flags.bounding_capabilities, "--bounding_capabilities") \
        if flags.bounding_capabilities is not None else DEFAULT
    agent_effective = names(flags.effective_capabilities, "--effective_capabilities") \
        if flags.effective_capabilities is not None else None
    asked_bounding = names(config.bounding_capabilities, "bounding_capabilities") \
        if config.bounding_capabilities is not None else None
    asked_effective = names(config.effective_capabilities, "effective_capabilities") \
        if config.effective_capabilities is not None else None
    bounding = asked_bounding if asked_bounding is not None else (
        asked_effective if asked_effective is not None else agent_bounding)
    effective = asked_effective if asked_effective is not None else (
        agent_effective & bounding if agent_effective is not None else bounding)
    # What the container named is checked first, so that the message names it.
    for asked, what in ((asked_bounding, "bounding"), (asked_effective, "effective"), (effective, "effective")):
        beyond = asked - agent_bounding if asked is not None else None
        if beyond:
            raise InvalidInput(f"{what} capabilities beyond the agent's bounding set: {', '.join(sorted(beyond))}")
    if not effective <= bounding:
        raise InvalidInput(f"effective capabilities beyond the bounding set: {', '.join(sorted(effective - bounding))}")
    if config.cap_add or config.cap_drop:
        bounding = add_drop(bounding, config.cap_add, config.cap_drop)
        effective = add_drop(effective, config.cap_add, config.cap_drop) & bounding
    return bounding, effective


def asks_for_capabilities(config) -> bool:
    """Whether the container asks for sets of its own; if not, it gets the agent's."""
    return (config.bounding_capabilities is not None or config.effective_capabilities is not None
            or bool(config.cap_add) or bool(config.cap_drop))


def numbers(capabilities: frozenset) -> frozenset:
    return frozenset(NUMBERS[name] for name in capabilities)


class CapabilitiesIsolator(Isolator):

    def __init__(self, flags):
        super().__init__(flags)
        self._agents: LaunchInfo | None = None      # for the containers that ask for no sets: made once

    def prepare(self, container_id, config):
        asks = asks_for_capabilities(config)
        if not asks and self._agents is not None:
            return self._agents
        from corral.confine import Confinement
        bounding, effective = resolve(config, self.flags)
        info = LaunchInfo(confinement=Confinement(bounding=numbers(bounding), effective=numbers(effective)))
        if not asks:
            self._agents = info
        return info


_NO_NEW_PRIVS: LaunchInfo | None = None


class NoNewPrivsIsolator(Isolator):
    """linux/nnp: no_new_privs, so that no exec (of a setuid binary, say) raises privileges."""

    def prepare(self, container_id, config):
        global _NO_NEW_PRIVS
        if _NO_NEW_PRIVS is None:
            from corral.confine import Confinement
            _NO_NEW_PRIVS = LaunchInfo(confinement=Confinement(no_new_privs=True))
        return _NO_NEW_PRIVS
