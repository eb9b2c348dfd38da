"""Mesos resources: the text and JSON forms, their arithmetic, and the host's defaults.

    cpus:2;mem:1024;disk:4096;ports:[31000-32000];gpus:0      text: scalars, [ranges], {sets}
    cpus(analytics):2                                          a resource reserved for a role
    [{"name":"cpus","type":"SCALAR","scalar":{"value":2}}]     JSON: a list of Mesos Resource objects

A `Resources` maps (name, role) to a value: a float (SCALAR), a `Ranges` (RANGES) or a
frozenset of strings (SET). Values that are empty (0, [], {}) are dropped, as Mesos does.
"""

from __future__ import annotations

import json
import math
import os
import re

from corral.ranges import Ranges
from corral.types import InvalidInput

DEFAULT_ROLE = "*"
DEFAULT_PORTS = "[31000-32000]"


def _scalar(value: float) -> float:
    # Mesos keeps scalars in fixed point with three decimals: 0.1 + 0.2 must be 0.3.
    return round(value, 3)


def _kind(value) -> str:
    return "ranges" if isinstance(value, Ranges) else "a set" if isinstance(value, frozenset) else "a scalar"


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, frozenset):
        return "{" + ",".join(sorted(value)) + "}"
    return str(value)


class Resources:
    """An immutable bag of resources keyed by (name, role)."""

    __slots__ = ("items",)

    def __init__(self, items: dict | None = None):
        self.items: dict[tuple[str, str], float | Ranges | frozenset] = {
            key: value for key, value in (items or {}).items() if value}

    # -- parsing ------------------------------------------------------------------------------

    @classmethod
    def parse(cls, text: str) -> "Resources":
        """The text form, or (if it starts with '[' or '{') the JSON form."""
        stripped = text.strip()
        if stripped.startswith(("[", "{")):
            try:
                data = json.loads(stripped)
            except ValueError as e:
                raise InvalidInput(f"resources are not valid JSON: {e}") from None
            return cls.from_json(data)
        return cls._gathered((*_parse_token(token), token)
                             for token in filter(None, (t.strip() for t in stripped.split(";"))))

    @classmethod
    def from_json(cls, data) -> "Resources":
        """A list of Mesos Resource objects (a lone object is taken as a list of one)."""
        if isinstance(data, dict):
            data = [data]
        if not isinstance(data, list):
            raise InvalidInput("resources in JSON must be a list of Resource objects")
        return cls._gathered((*_from_json_item(item, index), item.get("name")) for index, item in enumerate(data))

    @classmethod
    def _gathered(cls, parsed) -> "Resources":
        """(key, value, where) triples summed, in time linear in their number (a request may
        name thousands of resources)."""
        items: dict = {}
        for key, value, where in parsed:
            known = items.get(key)
            if known is None:
                items[key] = value
            elif type(known) is not type(value):
                raise InvalidInput(f"resource {key[0]} is given as both {_kind(known)} and {_kind(value)} ({where})")
            else:
                items[key] = _scalar(known + value) if isinstance(value, float) else known | value
        return cls(items)

    # -- forms ----------------------------------------------------------------------------------

    def __str__(self) -> str:
        return ";".join(f"{name}{'' if role == DEFAULT_ROLE else f'({role})'}:{_format(value)}"
                        for (name, role), value in sorted(self.items.items()))

    __repr__ = __str__

    def to_json(self) -> list[dict]:
        out = []
        for (name, role), value in sorted(self.items.items()):
            item: dict = {"name": name}
            if isinstance(value, Ranges):
                item.update(type="RANGES", ranges={"range": [{"begin": b, "end": e} for b, e in value.spans]})
            elif isinstance(value, frozenset):
                item.update(type="SET", set={"item": sorted(value)})
            else:
                item.update(type="SCALAR", scalar={"value": value})
            if role != DEFAULT_ROLE:
                item["role"] = role
            out.append(item)
        return out

    # -- arithmetic -----------------------------------------------------------------------------

    def __add__(self, other: "Resources") -> "Resources":
        items = dict(self.items)
        for key, value in other.items.items():
            known = items.get(key)
            if known is None:
                items[key] = value
            elif isinstance(value, float):
                items[key] = _scalar(known + value)
            else:
                items[key] = known | value
        return Resources(items)

    def __sub__(self, other: "Resources") -> "Resources":
        """What is left once `other` is taken out (scalars stop at 0)."""
        items = dict(self.items)
        for key, value in other.items.items():
            known = items.get(key)
            if known is None:
                continue
            items[key] = max(0.0, _scalar(known - value)) if isinstance(value, float) else known - value
        return Resources(items)

    def __eq__(self, other) -> bool:
        return isinstance(other, Resources) and other.items == self.items

    def __bool__(self) -> bool:
        return bool(self.items)

    def shortages(self, request: "Resources") -> list[str]:
        """Why `request` does not fit in these resources, one phrase per resource short; [] if it fits."""
        short = []
        for (name, role), want in sorted(request.items.items()):
            label = name if role == DEFAULT_ROLE else f"{name}({role})"
            have = self.items.get((name, role))
            if have is None:
                short.append(f"{label}: asked {_format(want)}, none free")
            elif type(have) is not type(want):
                short.append(f"{label}: asked {_kind(want)}, the agent has {_kind(have)}")
            elif isinstance(want, float) and want > have:
                short.append(f"{label}: asked {_format(want)}, {_format(have)} free")
            elif not isinstance(want, float) and not want <= have:
                short.append(f"{label}: {_format(want - have)} not free")
        return short

    # -- accessors ------------------------------------------------------------------------------

    def get(self, name: str, role: str | None = None):
        """The value of `name` in `role`, or summed over every role when role is None."""
        values = [v for (n, r), v in self.items.items() if n == name and role in (None, r)]
        if not values:
            return None
        total = values[0]
        for value in values[1:]:
            total = _scalar(total + value) if isinstance(total, float) else total | value
        return total

    def names(self) -> set[str]:
        return {name for name, _ in self.items}

    def filter(self, name: str) -> "Resources":
        return Resources({k: v for k, v in self.items.items() if k[0] == name})

    def without(self, name: str) -> "Resources":
        return Resources({k: v for k, v in self.items.items() if k[0] != name})


_TOKEN = re.compile(r"([A-Za-z_][\w.\-/]*)\s*(?:\(\s*([^()]*?)\s*\))?\s*:\s*(.*)", re.DOTALL)


def _parse_token(token: str):
    match = _TOKEN.fullmatch(token)
    if not match:
        raise InvalidInput(f"bad resource {token!r}: write NAME:VALUE or NAME(ROLE):VALUE")
    name, role, raw = match[1], match[2], match[3].strip()
    if role == "":
        raise InvalidInput(f"bad resource {token!r}: empty role")
    if not raw:
        raise InvalidInput(f"bad resource {token!r}: no value")
    try:
        if raw.startswith("["):
            value = Ranges.parse(raw)
        elif raw.startswith("{"):
            value = _parse_set(raw)
        else:
            value = _parse_scalar(raw)
    except InvalidInput as e:
        raise InvalidInput(f"bad resource {token!r}: {e}") from None
    return (name, role or DEFAULT_ROLE), value


def _parse_scalar(raw) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError, OverflowError):     # OverflowError: an integer past a float's range
        raise InvalidInput(f"{repr(raw)[:40]} is not a number") from None
    if isinstance(raw, bool) or not math.isfinite(value) or value < 0:
        raise InvalidInput(f"{raw!r} is not a non-negative number")
    return _scalar(value)


def _parse_set(raw: str) -> frozenset:
    if not raw.endswith("}"):
        raise InvalidInput(f"set {raw!r} must be written {{A,B,...}}")
    items = [i.strip() for i in raw[1:-1].split(",")]
    if any(not i for i in items) and raw[1:-1].strip():
        raise InvalidInput(f"set {raw!r} has an empty item")
    return frozenset(i for i in items if i)


_TYPES = {"SCALAR": "scalar", "RANGES": "ranges", "SET": "set"}


def _from_json_item(item, index: int):
    where = f"resource {index}"
    if not isinstance(item, dict):
        raise InvalidInput(f"{where} is not a JSON object")
    name = item.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][\w.\-/]*", name):
        raise InvalidInput(f"{where} needs a name, such as \"cpus\"")
    where = f"resource {index} ({name})"
    kind = item.get("type") or next((t for t, field in _TYPES.items() if field in item), None)
    if not isinstance(kind, str) or kind not in _TYPES:
        raise InvalidInput(f"{where}: type must be SCALAR, RANGES or SET, not {item.get('type')!r}")
    body = item.get(_TYPES[kind])
    try:
        if kind == "SCALAR":
            if not isinstance(body, dict) or isinstance(body.get("value"), (bool, str)):
                raise InvalidInput('wants "scalar": {"value": NUMBER}')
            value = _parse_scalar(body.get("value"))
        elif kind == "RANGES":
            spans = body.get("range", []) if isinstance(body, dict) else None
            if not isinstance(spans, list) or not all(
                    isinstance(s, dict) and _whole(s.get("begin")) and _whole(s.get("end")) for s in spans):
                raise InvalidInput('wants "ranges": {"range": [{"begin": N, "end": M}, ...]}')
            value = Ranges((s["begin"], s["end"]) for s in spans)
        else:
            items = body.get("item", []) if isinstance(body, dict) else None
            if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
                raise InvalidInput('wants "set": {"item": ["A", ...]}')
            value = frozenset(items)
    except InvalidInput as e:
        raise InvalidInput(f"{where}: {e}") from None
    return (name, _json_role(item, where)), value


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _json_role(item: dict, where: str) -> str:
    # Mesos's post-reservation-refinement form lists reservations; the last one is the role.
    reservations = item.get("reservations")
    if reservations:
        if not isinstance(reservations, list) or not all(isinstance(r, dict) for r in reservations):
            raise InvalidInput(f"{where}: reservations must be a list of objects")
        role = reservations[-1].get("role")
    else:
        role = item.get("role", DEFAULT_ROLE)
    if not isinstance(role, str) or not role:
        raise InvalidInput(f"{where}: role must be a non-empty string")
    return role


# -- what the host has ------------------------------------------------------------------------

MB = 1024 * 1024


def detect(declared: Resources, work_dir: str) -> Resources:
    """`declared` plus whatever of cpus, mem, disk and ports it does not name, as Mesos detects them:
    cpus = cores; mem = total - 1 GB when >= 2 GB, else half; disk = the work dir's filesystem
    - 5 GB when >= 10 GB, else half; ports [31000-32000]."""
    names = declared.names()
    found = {}
    if "cpus" not in names:
        found["cpus"] = float(os.cpu_count() or 1)
    if "mem" not in names:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / MB
        found["mem"] = total - 1024 if total >= 2048 else total / 2
    if "disk" not in names:
        stat = os.statvfs(_existing_ancestor(work_dir))
        total = stat.f_blocks * stat.f_frsize / MB
        found["disk"] = total - 5 * 1024 if total >= 10 * 1024 else total / 2
    detected = Resources({(name, DEFAULT_ROLE): _scalar(float(math.floor(v))) for name, v in found.items()})
    if "ports" not in names:
        detected += Resources({("ports", DEFAULT_ROLE): Ranges.parse(DEFAULT_PORTS)})
    return declared + detected


def _existing_ancestor(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path
