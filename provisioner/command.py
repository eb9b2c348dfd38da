"""An image's runtime config merged with a Mesos command, and the image's User resolved. Pure functions.

Mesos's rules (docker/runtime isolator): a shell command or a command value replaces the
image's Entrypoint and Cmd (a value is exec'd with the arguments as its whole argv, as Mesos
does with shell=false); otherwise Entrypoint runs with the command's arguments, or with Cmd
when there are none. Image Env is the base the task's env overrides; WorkingDir applies
when the task names none. Beyond Mesos, which ignores it, the image's User applies when the
task names no user.
"""

from __future__ import annotations

import os
import stat

from corral.record import Record
from corral.types import InvalidInput
from corral.users import resolve_user

from .extract import OPAQUE_XATTR, is_whiteout


class Command(Record):
    argv: list[str]
    env: dict[str, str] = dict
    workdir: str | None = None
    user: str | None = None
    executable: str | None = None       # what to exec when it is not argv[0] (a Mesos command value)


def merge_command(image_config: dict, value: str | None = None, arguments: list[str] | None = None,
                  shell: bool = False, env: dict | None = None, workdir: str | None = None,
                  user: str | None = None) -> Command:
    config = image_config or {}
    if shell:
        if not value:
            raise InvalidInput("a shell command needs a value")
        argv = ["/bin/sh", "-c", value]
    elif value:
        # CommandInfo with shell=false: exec `value` with `arguments` as the whole argv, argv[0] included.
        return Command(list(arguments or [value]), _env(config, env), workdir or config.get("WorkingDir") or None,
                       user or config.get("User") or None, executable=value)
    else:
        argv = list(config.get("Entrypoint") or []) + list(arguments or config.get("Cmd") or [])
    if not argv:
        raise InvalidInput("nothing to run: the image has no Entrypoint or Cmd and the task gives no command")
    return Command(argv, _env(config, env), workdir or config.get("WorkingDir") or None,
                   user or config.get("User") or None)


def _env(config: dict, env: dict | None) -> dict[str, str]:
    merged = {}
    for item in config.get("Env") or []:
        key, _, val = item.partition("=")
        merged[key] = val
    merged.update(env or {})
    return merged


def read_image_file(layers: list[str], path: str, limit: int = 1 << 20) -> str | None:
    """A small file of the image, read from its layer directories top down (whiteouts and opaque
    directories honoured), without mounting anything. A symlink on the way counts as absent:
    this reads /etc/passwd and /etc/group, which images keep as plain files."""
    parts = [p for p in path.split("/") if p]
    for layer in reversed(layers):
        found, final = _lookup(layer, parts)
        if found:
            with open(found, "rb") as f:
                return f.read(limit).decode("utf-8", "replace")
        if final:
            return None
    return None


def _lookup(layer: str, parts: list[str]) -> tuple[str | None, bool]:
    """(the regular file at parts in this layer, or None; whether this layer decides the answer)."""
    current = layer
    for i, part in enumerate(parts):
        parent, current = current, os.path.join(current, part)
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            return None, i > 0 and _opaque(parent)
        if is_whiteout(st) or stat.S_ISLNK(st.st_mode):
            return None, True
        if i == len(parts) - 1:
            return (current if stat.S_ISREG(st.st_mode) else None), True
        if not stat.S_ISDIR(st.st_mode):
            return None, True
    return None, False


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def image_user(layers: list[str], spec: str) -> tuple[int, int]:
    """resolve_user against the image's own /etc/passwd and /etc/group (ProvisionInfo.layers)."""
    return resolve_user(spec, read_image_file(layers, "/etc/passwd"), read_image_file(layers, "/etc/group"))
