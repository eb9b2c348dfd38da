"""Users and groups by name, from a container's /etc/passwd and /etc/group texts (an image's, or
the running container's own as an exec reads them). Small and import-light: a container's init
has it loaded before it leaves the host's filesystem, to resolve an exec's --user."""

from __future__ import annotations

from .types import InvalidInput


def resolve_user(spec: str, passwd: str | None, group: str | None = None) -> tuple[int, int]:
    """`name`, `uid`, `name:group`, `uid:gid`... to (uid, gid), by the image's /etc/passwd and
    /etc/group texts. A numeric uid needs no entry (gid 0 then, as docker does); a name does."""
    name, _, group_spec = (spec or "").partition(":")
    if not name:
        raise InvalidInput(f"invalid user {spec!r}")
    users = _table(passwd)
    if name.isdigit():
        uid = int(name)
        entry = next((e for e in users.values() if e[1] == name), None)
        gid = int(entry[2]) if entry and entry[2].isdigit() else 0
    elif name in users:
        uid, gid = int(users[name][1]), int(users[name][2])
    else:
        raise InvalidInput(f"user {name!r} is not in the image's /etc/passwd")
    if group_spec:
        if group_spec.isdigit():
            gid = int(group_spec)
        elif group_spec in (groups := _table(group)):
            gid = int(groups[group_spec][1])
        else:
            raise InvalidInput(f"group {group_spec!r} is not in the image's /etc/group")
    return uid, gid


def user_env(passwd: str | None, uid: int) -> dict[str, str]:
    """HOME, USER and LOGNAME of `uid`, where `passwd` names it (HOME / alone otherwise)."""
    for line in (passwd or "").splitlines():
        fields = line.split(":")
        if len(fields) >= 6 and fields[2] == str(uid):
            return {"HOME": fields[5] or "/", "USER": fields[0], "LOGNAME": fields[0]}
    return {"HOME": "/"}


def _table(text: str | None) -> dict[str, list[str]]:
    """name -> [name, id, gid-or-members, ...] for a passwd or group file (password column dropped)."""
    rows = {}
    for line in (text or "").splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] and not line.startswith("#"):
            rows.setdefault(fields[0], [fields[0]] + fields[2:])
    return rows
