"""The shapes of the agent API's request bodies: one place checks what each call's body holds.

Every field the agent reads is read through a `JsonObject`, which answers InvalidInput naming
the field (its path in the body) and the type it must have. Nothing of a body reaches the
agent's core, its checkpoint or its launch server unchecked.
"""

from __future__ import annotations

from corral.types import ContainerConfig, InvalidInput, parse_signal

# One place checks what each call's body holds: every field the agent reads is read through an
# `JsonObject`, which answers InvalidInput naming the field and the type it must have. Nothing of a
# body reaches the agent's core, its checkpoint or its launch server unchecked.

_JSON_TYPES = {dict: "a JSON object", list: "a list", str: "a string", int: "an integer", float: "a number",
               bool: "true or false"}


class JsonObject:
    """A JSON object of a request, at `where` ("launch_container.command")."""

    def __init__(self, data, where: str = ""):
        if not isinstance(data, dict):
            raise InvalidInput(f'{_quoted(where)} must be a JSON object, not {_json_type(data)}')
        self.data, self.where = data, where

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def get(self, key: str, kind: type, default=None):
        """The field, which must be of `kind` (a str also valid Unicode) when present and not null."""
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise InvalidInput(f'"{self.path(key)}" must be {_JSON_TYPES[kind]}, not {_json_type(value)}')
        if kind is str:
            sound_text(value, self.path(key))
        return value

    def object(self, key: str) -> "JsonObject":
        """The field as an JsonObject ({} when absent)."""
        return JsonObject(self.get(key, dict, {}), self.path(key))

    def strings(self, key: str) -> list[str]:
        values = self.get(key, list, [])
        for index, value in enumerate(values):
            if not isinstance(value, str):
                raise InvalidInput(f'"{self.path(key)}" must be a list of strings ({index}: {_json_type(value)})')
            sound_text(value, f"{self.path(key)}[{index}]")
        return values


def _quoted(where: str) -> str:
    return f'"{where}"' if where else "the body"


def _json_type(value) -> str:
    return "null" if value is None else next(
        (name for kind, name in _JSON_TYPES.items() if type(value) is kind), type(value).__name__)


def sound_text(value: str, where: str) -> str:
    """A string fit for a path, an argv or an answer: JSON's \\ud800 and \\u0000 escapes make
    strings that none of these can hold."""
    try:
        value.encode()
    except UnicodeEncodeError:
        raise InvalidInput(f'"{where}" is not valid Unicode (a lone surrogate)') from None
    if "\0" in value:
        raise InvalidInput(f'"{where}" holds a NUL character')
    return value


def required(call: JsonObject, key: str, kind: type):
    value = call.get(key, kind)
    if value is None:
        raise InvalidInput(f'{_quoted(call.where)} needs "{key}"')
    return value


def uint64(call: JsonObject, key: str, required: bool = False) -> int | None:
    """A uint64 field: a number, or a string of digits as protobuf's JSON writes 64-bit integers."""
    value = call.data.get(key)
    if value is None:
        if required:
            raise InvalidInput(f'{_quoted(call.where)} needs "{key}"')
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 64:
        raise InvalidInput(f'"{call.path(key)}" must be an integer from 0 to 2^64-1, not {value!r}'[:300])
    return value


def container_id_of(call: JsonObject) -> str:
    value = call.object("container_id").get("value", str)
    if value is None:
        raise InvalidInput(f'{_quoted(call.where)} needs "container_id": {{"value": "..."}}')
    return value


def signal_of(call: JsonObject) -> int:
    value = call.data.get("signal", "SIGKILL")
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise InvalidInput(f'"{call.path("signal")}" must be a name or a number, not {_json_type(value)}')
    return parse_signal(sound_text(value, call.path("signal")) if isinstance(value, str) else value)


def container_config(call: dict, where: str = "") -> ContainerConfig:
    """A ContainerConfig from a JSON object holding Mesos's "command" (CommandInfo) and
    "container" (ContainerInfo), checked as LAUNCH_CONTAINER's are: for a framework's task
    (agent/tasks.py) too. InvalidInput names what is wrong."""
    return config_of(JsonObject(call, where))


def config_of(call: JsonObject) -> ContainerConfig:
    """Mesos's CommandInfo and ContainerInfo, the parts corral honours."""
    if "command" not in call.data:
        raise InvalidInput(f'{_quoted(call.where)} needs "command": {{"value": "..."}}')
    command = call.object("command")
    value, arguments = command.get("value", str, ""), command.strings("arguments")
    if command.get("shell", bool, True):
        if not value:
            raise InvalidInput('a shell command needs "command.value"')
        argv = ["/bin/sh", "-c", value]
    else:
        argv = [value or arguments[0], *arguments[1:]] if (value or arguments) else []
    environment = command.object("environment")
    variables = [JsonObject(v, f"{environment.path('variables')}[{i}]")
                 for i, v in enumerate(environment.get("variables", list, []))]
    env = {}
    for variable in variables:
        name = variable.get("name", str)
        if name is None:
            raise InvalidInput(f'"{variable.where}" needs a "name"')
        env[name] = variable.get("value", str, "")
    container = call.object("container")
    kind = container.get("type", str, "MESOS")
    if kind == "DOCKER":
        image, network = _docker(container.object("docker"))
    elif kind == "MESOS":
        image, network = _mesos_image(container.object("mesos")), None
    else:
        raise InvalidInput(f'"container.type" must be MESOS or DOCKER, not {kind!r}')
    hostname = container.get("hostname", str)
    if hostname is not None and len(hostname.encode()) > HOST_NAME_MAX:
        raise InvalidInput(f'"{container.path("hostname")}" is longer than {HOST_NAME_MAX} bytes')
    # A tty (TTYInfo) takes input, as in Mesos; its window_size is the terminal's until a client sets its own.
    tty = container.data.get("tty_info") is not None
    window = window_size(container.object("tty_info"))      # an object, if given
    return ContainerConfig(
        argv=argv, env=env, user=command.get("user", str), hostname=hostname, tty=tty, stdin=tty,
        window=list(window) if tty and window else None,
        containerizer="docker" if kind == "DOCKER" else None, image=image, network=network,
        **_linux_info(container.object("linux_info")), rlimits=_rlimit_info(container.object("rlimit_info")))


def window_size(tty_info: JsonObject) -> tuple[int, int] | None:
    """TTYInfo.window_size as (rows, columns); None where it has none."""
    size = tty_info.object("window_size")
    rows, cols = size.get("rows", int), size.get("columns", int)
    if rows is None or cols is None:
        return None
    if not (0 < rows < 65536 and 0 < cols < 65536):
        raise InvalidInput(f'"{size.where}" must have rows and columns from 1 to 65535')
    return rows, cols


def _linux_info(info: JsonObject) -> dict:
    """ContainerInfo.linux_info: capabilities (CapabilityInfo) and seccomp (SeccompInfo)."""
    from corral.isolators.capabilities import names
    config = {}
    for field in ("effective_capabilities", "bounding_capabilities"):
        if info.data.get(field) is not None:
            listed = info.object(field).strings("capabilities")
            config[field] = sorted(names(listed, f'"{info.path(field)}.capabilities"'))
    if info.data.get("seccomp") is not None:
        seccomp = info.object("seccomp")
        name = seccomp.get("profile_name", str)
        if seccomp.get("unconfined", bool) is True:
            config["seccomp_profile"] = "unconfined"
        elif name and "/" not in name and name not in (".", ".."):
            config["seccomp_profile"] = name          # in the agent's --seccomp_config_dir
        else:
            raise InvalidInput(f'"{seccomp.where}" needs "profile_name" (a name in the agent\'s '
                               '--seccomp_config_dir) or "unconfined": true')
    return config


def _rlimit_info(info: JsonObject) -> list:
    """ContainerInfo.rlimit_info: {"rlimits": [{"type": "RLMT_NOFILE", "soft": N, "hard": N}]}."""
    if not info.data:
        return []
    from corral.isolators.rlimits import parse_rlimits
    rlimits = info.get("rlimits", list, [])
    parse_rlimits(rlimits)
    return rlimits


HOST_NAME_MAX = 64      # Linux's: sethostname refuses a longer name (the task would fail at its start)


def _mesos_image(mesos: JsonObject) -> dict | None:
    """ContainerInfo.mesos.image: an image the Mesos containerizer provisions."""
    if mesos.data.get("image") is None:
        return None
    return image_of(mesos.object("image"))


def image_of(image: JsonObject) -> dict:
    """Mesos's Image: {"type": "DOCKER", "docker": {"name": "busybox"}} (or APPC, "appc")."""
    kind = image.get("type", str)
    if kind not in ("DOCKER", "APPC"):
        raise InvalidInput(f'"{image.where}" needs a type, DOCKER or APPC')
    name = image.object(kind.lower()).get("name", str)
    if not name:
        raise InvalidInput(f'"{image.path(kind.lower())}" needs a "name", such as "busybox"')
    return {"type": kind, "name": name}


# Mesos's DockerInfo.network: the host's network (the default: PORT0.. are host ports) or none.
# BRIDGE and USER would need port mappings within the ports given: not supported.
_DOCKER_NETWORKS = {"HOST": None, "NONE": "none"}


def _docker(docker: JsonObject) -> tuple[dict, str | None]:
    """ContainerInfo.docker: the image and network of a container for the docker containerizer."""
    image = docker.get("image", str)
    if not image:
        raise InvalidInput('a DOCKER container needs "container.docker.image", such as {"image": "busybox"}')
    network = docker.get("network", str, "HOST")
    if network not in _DOCKER_NETWORKS:
        raise InvalidInput(f'"container.docker.network" {network!r} is not supported: HOST (the default) or NONE')
    return {"type": "DOCKER", "name": image}, _DOCKER_NETWORKS[network]


def in_range(value: int, where: str) -> int:
    if value > MAX_OFFSET:
        raise InvalidInput(f'"{where}" is out of range: {value} is past the largest file offset ({MAX_OFFSET})')
    return value


MAX_OFFSET = (1 << 63) - 1      # off_t's
