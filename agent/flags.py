"""`corral agent`'s flags, by mesos-agent's names.

    --work_dir=/var/lib/corral   --work-dir /var/lib/corral   MESOS_WORK_DIR=...   CORRAL_WORK_DIR=...

The command line wins over the environment, CORRAL_ over MESOS_, and either over the default.
Booleans also take the bare `--strict` and `--no-strict`. Durations are Mesos's (`30secs`,
`100ms`, `1mins`) or plain seconds. Every value is checked here, so a bad flag stops the agent
at start with one line naming it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re

from corral.types import MAX_SECONDS, InvalidInput, check_cgroups_root, check_pids_limit
from corral.isolators.registry import DEFAULT_ISOLATION
from corral.provisioner.options import parse_size


class FlagError(InvalidInput):
    pass


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise ValueError("is not true or false")


_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "secs": 1, "mins": 60, "hrs": 3600, "days": 86400, "weeks": 604800}


def _duration(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text.strip())
    if not match or match[2] not in ("", *_UNITS):
        raise ValueError(f"is not a duration such as 30secs, 100ms or 1mins (units: {', '.join(_UNITS)})")
    seconds = float(match[1]) * _UNITS.get(match[2], 1)
    if not seconds > 0:
        raise ValueError("must be longer than 0")
    if not seconds <= MAX_SECONDS:
        raise ValueError("must be at most 1weeks")
    return seconds


def _port(text: str) -> int:
    if not (text.strip().isascii() and text.strip().isdigit()) or not 0 < int(text) < 65536:
        raise ValueError("is not a port number 1-65535")
    return int(text)


def _absolute_directory(text: str) -> str:
    """A directory, made absolute: the sandboxes' paths are recorded and bind-mounted as they are."""
    if not text.strip() or "\0" in text:
        raise ValueError("must name a directory")
    return os.path.abspath(text)


def _ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise ValueError("is not an IP address") from None


def _choice(*choices: str):
    def check(text: str) -> str:
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return text
    return check


def _names(known: tuple[str, ...] | None = None):
    def check(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if known is not None and n not in known]
        if unknown:
            raise ValueError(f"names unknown {'ones' if len(unknown) > 1 else 'one'}: "
                             f"{', '.join(unknown)} (known: {', '.join(known)})")
        if len(set(names)) != len(names):
            raise ValueError("names one twice")
        return names
    return check


def _isolation(text: str) -> list[str]:
    from corral.isolators.registry import isolator_class
    names = _names()(text)
    for name in names:
        try:
            isolator_class(name)
        except InvalidInput as e:
            raise ValueError(str(e)) from None
    return names


def _capabilities(text: str) -> list[str]:
    """Mesos's CapabilityInfo: {"capabilities": ["NET_RAW", "SYS_ADMIN"]} (or file://PATH)."""
    from corral.isolators.capabilities import names
    try:
        listed = json.loads(_file_or_text(text))["capabilities"]
        return sorted(names(listed, "capabilities"))
    except InvalidInput as e:
        raise ValueError(str(e)) from None
    except (ValueError, KeyError, TypeError):
        raise ValueError('is not {"capabilities": ["NET_RAW", ...]}') from None


def _devices(text: str) -> list:
    from corral.isolators.devices import parse_whitelist
    try:
        return parse_whitelist(_file_or_text(text))
    except InvalidInput as e:
        raise ValueError(str(e)) from None


def _directory(text: str) -> str:
    if not os.path.isdir(text):
        raise ValueError("is not a directory")
    return os.path.abspath(text)


def _pids_limit(text: str) -> int:
    if not (text.strip().isascii() and text.strip().isdigit()):
        raise ValueError("is not a whole number")
    return _checked(check_pids_limit)(int(text))


def _checked(check):
    """A flag's parser from one of corral.types's checks (its InvalidInput as the ValueError parse wants)."""
    def parse(text: str):
        try:
            return check(text)
        except InvalidInput as e:
            raise ValueError(str(e)) from None
    return parse


def _gpu_indices(text: str) -> list[int]:
    """Mesos's --nvidia_gpu_devices: [0,1] (a JSON list of GPU indices, each once)."""
    try:
        indices = json.loads(text)
    except ValueError:
        indices = None
    if not isinstance(indices, list) or not all(type(i) is int and i >= 0 for i in indices):
        raise ValueError("is not a list of GPU indices, such as [0,1]")
    if len(set(indices)) != len(indices):
        raise ValueError("names a GPU twice")
    return indices


def _resources(text: str):
    from .resources import Resources
    try:
        return Resources.parse(_file_or_text(text))
    except InvalidInput as e:
        raise ValueError(str(e)) from None


def _credentials(text: str) -> dict[str, str]:
    """A file of principal/secret pairs: `principal secret` lines, or Mesos's JSON
    {"credentials": [{"principal": ..., "secret": ...}]}."""
    path = text[len("file://"):] if text.startswith("file://") else text
    try:
        with open(path) as f:
            raw = f.read()
    except OSError as e:
        raise ValueError(f"cannot be read: {e.strerror}") from None
    if raw.lstrip().startswith("{"):
        try:
            pairs = [(c["principal"], c["secret"]) for c in json.loads(raw)["credentials"]]
        except (ValueError, KeyError, TypeError):
            raise ValueError('is not {"credentials": [{"principal": ..., "secret": ...}]}') from None
    else:
        pairs = []
        for number, line in enumerate(raw.splitlines(), 1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            if len(fields) != 2:
                raise ValueError(f"line {number} is not `principal secret`")
            pairs.append((fields[0], fields[1]))
    if not pairs or not all(isinstance(p, str) and p and isinstance(s, str) and s for p, s in pairs):
        raise ValueError("holds no principal/secret pair")
    return dict(pairs)


def _file_or_text(text: str) -> str:
    """Mesos lets a flag's value be `file:///path`: the file's contents."""
    if not text.startswith("file://"):
        return text
    try:
        with open(text[len("file://"):]) as f:
            return f.read()
    except OSError as e:
        raise ValueError(f"cannot be read: {e.strerror}") from None


def _master(text: str) -> str:
    """--master: HOST:PORT, or file://PATH holding it; the text HOST:PORT."""
    if text.startswith("zk://"):
        raise ValueError("zk:// (ZooKeeper) masters are not supported yet: give the master as HOST:PORT")
    address = _file_or_text(text).strip()
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("is not a master's HOST:PORT (or file://PATH holding it)")
    return address


def _attributes(text: str) -> list[dict]:
    """Mesos's attributes, `rack:r1;level:3;zone:{a,b};slots:[1-4]` (a number is a scalar, [..]
    ranges, {..} a set, anything else text), as Mesos's JSON Attribute objects."""
    found = []
    for token in filter(None, (t.strip() for t in _file_or_text(text).split(";"))):
        name, colon, value = token.partition(":")
        name, value = name.strip(), value.strip()
        if not colon or not name or not value:
            raise ValueError(f"{token!r} is not name:value")
        if value.startswith("["):
            spans = re.findall(r"(\d+)-(\d+)", value)
            if not value.endswith("]") or not spans:
                raise ValueError(f"{token!r}: ranges are [BEGIN-END,...]")
            found.append({"name": name, "type": "RANGES",
                          "ranges": {"range": [{"begin": int(b), "end": int(e)} for b, e in spans]}})
        elif value.startswith("{"):
            found.append({"name": name, "type": "SET",
                          "set": {"item": [i.strip() for i in value.strip("{}").split(",") if i.strip()]}})
        elif re.fullmatch(r"-?\d+(\.\d+)?", value):
            found.append({"name": name, "type": "SCALAR", "scalar": {"value": float(value)}})
        else:
            found.append({"name": name, "type": "TEXT", "text": {"value": value}})
    return found


class Flag:
    def __init__(self, name: str, parse, default, help: str):
        """default: the text, or a function of the environment that returns it."""
        self.name, self.parse, self.default, self.help = name, parse, default, help

    def default_text(self, environ) -> str | None:
        return self.default(environ) if callable(self.default) else self.default


FLAGS = {flag.name: flag for flag in [
    Flag("work_dir", _absolute_directory, "/var/lib/corral", "sandboxes, images and the checkpoint (meta/)"),
    Flag("runtime_dir", _absolute_directory, "/run/corral",
         "per-container runtime state (a tmpfs: gone after a reboot)"),
    Flag("resources", _resources, None,
         "the agent's resources: cpus:2;mem:1024;ports:[31000-32000], JSON, or file://PATH; "
         "cpus, mem, disk and ports not named are detected"),
    Flag("isolation", _isolation, ",".join(DEFAULT_ISOLATION), "isolators, comma separated"),
    Flag("nvidia_gpu_devices", _gpu_indices, None,
         "gpu/nvidia: the GPUs (NVML indices, [0,1]) the agent offers as gpus; with it, --resources "
         "must say gpus:N for as many (default: every GPU NVML finds)"),
    Flag("nvidia_volumes", _choice("needed", "all"), "needed",
         "gpu/nvidia: which image containers get the driver's volume at /usr/local/nvidia: those "
         "whose image has the label com.nvidia.volumes.needed (Mesos's rule), or all"),
    Flag("containerizers", _names(("mesos", "docker", "external")), "mesos",
         "containerizers to use, in order: a container goes to the first that takes it"),
    Flag("image_providers", _names(("docker", "appc")), "", "image types the mesos containerizer provisions"),
    Flag("docker_registry", str, "https://registry-1.docker.io", "where docker images are pulled from"),
    Flag("max_layer_size", parse_size, "16GB",
         "refuse an image layer that unpacks to more than this, a sparse file's holes included"),
    Flag("docker_socket", str, lambda environ: environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock",
         "the docker containerizer's dockerd (default: DOCKER_HOST, else unix:///var/run/docker.sock)"),
    Flag("docker_kill_orphans", _boolean, "true",
         "docker: at start, remove this agent's docker containers that no checkpoint knows"),
    Flag("external_containerizer_path", str, None,
         "the external containerizer's program (docs/external-containerizer.md)"),
    Flag("external_containerizer_timeout", _duration, "30secs",
         "how long a call of the external program may take (its waits excepted)"),
    Flag("recover", _choice("reconnect", "cleanup"), "reconnect",
         "reconnect: re-attach the containers still running; cleanup: destroy everything and exit"),
    Flag("strict", _boolean, "true", "refuse to start on a damaged checkpoint (false: report it lost)"),
    Flag("ip", _ip, "127.0.0.1", "the address the HTTP API listens on"),
    Flag("port", _port, "5051", "the port the HTTP API listens on"),
    Flag("http_request_timeout", _duration, "30secs",
         "HTTP: how long a connection may sit idle or send a request's headers, then send its body "
         "(408 past it), then take the response; past any of these it is closed"),
    Flag("http_heartbeat_interval", _duration, "30secs",
         "HTTP: how often a streaming response (ATTACH_CONTAINER_OUTPUT) carries a heartbeat when quiet"),
    Flag("cgroups_root", _checked(check_cgroups_root), "corral",
         "the cgroup under which every container's cgroups live (a relative name: no '..', '.' or leading '/')"),
    Flag("cgroups_enable_cfs", _boolean, "false", "enforce cpus as a hard CFS quota"),
    Flag("enforce_container_ports", _boolean, "false",
         "network/ports: end a container that listens on an agent port it was not given"),
    Flag("container_ports_watch_interval", _duration, "30secs", "network/ports: how often to look"),
    Flag("master", _master, None, "the Mesos master to join: HOST:PORT or file://PATH (agent/master.py)"),
    Flag("attributes", _attributes, None, "attributes offered with the agent's resources: rack:r1;level:3"),
    Flag("hostname", str, None, "the hostname the master is given (default: the host's name)"),
    Flag("credentials", _credentials, None, "a file of principal/secret pairs; every API call needs HTTP basic auth"),
    # Confinement (docs/confinement.md).
    Flag("effective_capabilities", _capabilities, None,
         'linux/capabilities: the effective set of a container that asks for none: {"capabilities": [...]}'),
    Flag("bounding_capabilities", _capabilities, None,
         "linux/capabilities: the most any container may have (default: Docker's default set)"),
    Flag("seccomp_config_dir", _directory, None, "linux/seccomp: where the profiles containers name are"),
    Flag("seccomp_profile_name", str, None,
         "linux/seccomp: the default profile, in --seccomp_config_dir; unconfined for none "
         "(default: corral's, with the effect of Docker's)"),
    Flag("allowed_devices", _devices, None,
         'cgroups/devices: devices every container may use beyond the defaults: {"allowed_devices": '
         '[{"device": {"path": "/dev/fuse"}, "access": {"read": true, "write": true, "mknod": true}}]}'),
    Flag("cgroups_pids_limit", _pids_limit, None,
         "cgroups/pids: the pids limit of a container that asks for none (default: none)"),
]}


class Flags:
    """The parsed flags as attributes (flags.work_dir, ...), plus the text each came from."""

    def __init__(self, values: dict, texts: dict):
        self.__dict__.update(values)
        self._texts = texts

    def to_list(self) -> list[dict]:
        """GET_FLAGS's `flags`: name and value as given (a secret's file is named, not shown)."""
        return [{"name": name, "value": text} for name, text in sorted(self._texts.items()) if text is not None]


def parse(argv: list[str], environ: dict | None = None) -> Flags:
    """Flags from the command line and the environment; FlagError names the first bad one."""
    environ = os.environ if environ is None else environ
    texts = {name: flag.default_text(environ) for name, flag in FLAGS.items()}
    for prefix in ("MESOS_", "CORRAL_"):
        for name in FLAGS:
            if prefix + name.upper() in environ:
                texts[name] = environ[prefix + name.upper()]
    texts.update(_command_line(argv))
    values = {}
    for name, text in texts.items():
        if text is None:
            values[name] = None
            continue
        try:
            values[name] = FLAGS[name].parse(text)
        except ValueError as e:
            shown = text if len(text) <= 60 else text[:57] + "..."
            raise FlagError(f"--{name}={shown}: {e}") from None
    if values["seccomp_profile_name"] not in (None, "unconfined"):
        from corral.isolators.seccomp import profile_path
        try:
            path = profile_path(values["seccomp_profile_name"], values["seccomp_config_dir"])
        except InvalidInput as e:
            raise FlagError(f"--seccomp_profile_name: {e}") from None
        if not os.path.isfile(path):
            raise FlagError(f"--seccomp_profile_name: {path} does not exist")
    if "external" in values["containerizers"] and not values["external_containerizer_path"]:
        raise FlagError("--containerizers=external needs --external_containerizer_path (the program to run)")
    return Flags(values, texts)


def _command_line(argv: list[str]) -> dict[str, str]:
    given = {}
    args = list(argv)
    while args:
        arg = args.pop(0)
        if not arg.startswith("--") or arg == "--":
            raise FlagError(f"unexpected argument {arg!r}: flags are --name=value")
        name, has_value, value = arg[2:].partition("=")
        name = name.replace("-", "_")
        negated = not has_value and name.startswith("no_") and name[3:] in FLAGS
        if negated:
            name, has_value, value = name[3:], True, "false"
        flag = FLAGS.get(name)
        if flag is None:
            raise FlagError(f"unknown flag --{name} (see --help)")
        if not has_value:
            if flag.parse is _boolean:
                value = "true"
            elif args and not args[0].startswith("--"):
                value = args.pop(0)
            else:
                raise FlagError(f"--{name} needs a value")
        if negated and flag.parse is not _boolean:
            raise FlagError(f"--no-{name}: --{name} is not a boolean flag")
        given[name] = value
    return given


def usage() -> str:
    lines = ["usage: corral agent [--flag=value ...]   (also --flag value, --flag-name, MESOS_FLAG, CORRAL_FLAG)", ""]
    for flag in FLAGS.values():
        default = f" (default {flag.default})" if flag.default not in (None, "") and not callable(flag.default) else ""
        lines.append(f"  --{flag.name:<32} {flag.help}{default}")
    return "\n".join(lines)
