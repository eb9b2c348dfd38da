"""The allocator: hands the agent's resources out to containers, never more than it has.

A container asks for amounts (cpus:0.5;mem:128), for exact ranges or set items
(ports:[31000-31001], fpgas:{fpga0}), or for a number of values of a ranges or set resource
(ports:2, fpgas:1), which the allocator picks. A scalar resource made of whole units (gpus:2,
whose units the gpu/nvidia isolator names: GPU indices) is given as that many units, and which
ones is recorded in `assigned`. What each container holds is written to `path` at once
(durably, unless the caller keeps the durable record itself, as the agent does in each
container's checkpoint), so a restarted agent never hands the same port or device out twice.
"""

from __future__ import annotations

import re
from itertools import islice

from corral.files import DamagedFile, read_json, write_json
from corral.ranges import Ranges
from corral.types import CorralError, InvalidInput

from .resources import Resources


class InsufficientResources(CorralError):
    """A request that does not fit in what is free; the message names every resource short."""


class Allocator:
    """`host` (agent.ports.HostPorts) keeps the ports resource clear of ports the host uses."""

    def __init__(self, total: Resources, path: str | None = None, host=None, *,
                 held: dict[str, Resources] | None = None, durable: bool = True, defer=None,
                 units: dict[str, list[str]] | None = None, assigned: dict[str, dict] | None = None):
        """`units`: the scalar resources given as whole units, and their names (gpus -> ['0', '1']);
        `assigned`: which units each owner holds (from the containers' checkpoints, as `held`).
        `held`: what each owner holds, known from elsewhere (the containers' own checkpoints),
        instead of reading `path`; `durable=False` when `path` only mirrors such a record.
        `defer(fn)`: run fn soon (an event loop's call_soon), for a mirror that may lag its changes
        by a moment: the changes made meanwhile are written once; flush() writes them now."""
        self.total = total
        self.path = path
        self.host = host
        self.durable = durable
        self.defer = defer
        self._pending = False
        self.units = {name: list(names) for name, names in (units or {}).items()}
        self.assigned: dict[str, dict[str, list[str]]] = dict(assigned or {})
        if held is None:
            self.held: dict[str, Resources] = self._load() if path else {}
        else:
            self.restore(held)

    def free(self) -> Resources:
        free = self.total
        for held in self.held.values():
            free -= held
        return free

    def allocate(self, owner: str, request: Resources) -> Resources:
        """Reserve `request` for `owner` and checkpoint it; returns what was given (ports picked)."""
        if owner in self.held:
            raise InvalidInput(f"{owner} already holds resources: {self.held[owner]}")
        free = self.free()
        given, short = Resources(), []
        for key, want in sorted(request.items.items()):
            have, problem = free.items.get(key), None
            if isinstance(want, float) and isinstance(have, Ranges):
                want, problem = self._pick(key, want, have)
            elif isinstance(want, float) and isinstance(have, frozenset):
                want, problem = self._pick_items(key, want, have)
            elif isinstance(want, Ranges):
                problem = self._check_ranges(key, want)
            problem = problem or "; ".join(free.shortages(Resources({key: want})))
            if problem:
                short.append(problem)
            else:
                given += Resources({key: want})
        units, problem = self._pick_units(given)
        if problem:
            short.append(problem)
        if short:
            more = f"; and {len(short) - 10} more" if len(short) > 10 else ""
            raise InsufficientResources(f"not enough free resources for {owner}: {'; '.join(short[:10])}{more}")
        self.held[owner] = given
        if units:
            self.assigned[owner] = units
        self._save()
        return given

    def given_units(self, owner: str) -> dict[str, list[str]]:
        """The units `owner` holds of each whole-unit resource (gpus -> ['1'])."""
        return self.assigned.get(owner, {})

    def _pick_units(self, given: Resources) -> tuple[dict, str | None]:
        """The units of each whole-unit resource in `given`: the first free ones, in their order."""
        picked = {}
        for name, names in self.units.items():
            count = given.get(name)
            if not count:
                continue
            if count != int(count):
                return {}, f"{name}: asked {count:g}; {name} are given as whole units"
            taken = {unit for units in self.assigned.values() for unit in units.get(name, ())}
            free = [unit for unit in names if unit not in taken]
            if len(free) < count:
                return {}, f"{name}: asked {int(count)}, {len(free)} free"
            picked[name] = free[:int(count)]
        return picked, None

    @staticmethod
    def _pick_items(key, count: float, have: frozenset) -> tuple[frozenset | None, str | None]:
        name = key[0]
        if count != int(count):
            return None, f"{name}: asked {count:g}; ask for a whole number or explicit items"
        if len(have) < count:
            return None, f"{name}: asked {int(count)}, {len(have)} free"
        return frozenset(sorted(have, key=_natural)[:int(count)]), None

    def _pick(self, key, count: float, have: Ranges) -> tuple[Ranges | None, str | None]:
        name = key[0]
        if count != int(count):
            return None, f"{name}: asked {count:g}; ask for a whole number or explicit ranges"
        candidates = have
        if name == "ports" and self.host is not None:
            candidates = have - self.host.bound() - self.host.ephemeral()
        if len(candidates) < count:
            return None, f"{name}: asked {int(count)}, {len(candidates)} free"
        return Ranges((p, p) for p in islice(candidates, int(count))), None

    def _check_ranges(self, key, want: Ranges) -> str | None:
        name = key[0]
        outside = want - (self.total.items.get(key) or Ranges())
        if outside:
            return f"{name}: {outside} outside the agent's {name} {self.total.items.get(key) or '[]'}"
        if name == "ports" and self.host is not None:
            busy = want & self.host.bound()
            if busy:
                return f"ports: {busy} in use on the host"
        return None

    def release(self, owner: str) -> Resources | None:
        self.assigned.pop(owner, None)
        given = self.held.pop(owner, None)
        if given is not None:
            self._save()
        return given

    def retain(self, owners) -> list[str]:
        """Release everything held by owners not in `owners` (containers recovery did not find)."""
        gone = sorted(set(self.held) - set(owners))
        for owner in gone:
            del self.held[owner]
            self.assigned.pop(owner, None)
        if gone:
            self._save()
        return gone

    def restore(self, held: dict[str, Resources]) -> None:
        """Replace what is held (rebuilt from the containers' own checkpoints) and checkpoint it."""
        self.held = dict(held)
        self.assigned = {owner: units for owner, units in self.assigned.items() if owner in self.held}
        self._save()

    def _load(self) -> dict[str, Resources]:
        data = read_json(self.path, default={})
        if not isinstance(data, dict):
            raise DamagedFile(self.path, "not a map of owner to resources")
        try:
            return {owner: Resources.from_json(held) for owner, held in data.items()}
        except InvalidInput as e:
            raise DamagedFile(self.path, str(e)) from None

    def _save(self) -> None:
        if not self.path:
            return
        if self.defer is None:
            self._write()
        elif not self._pending:
            self._pending = True
            self.defer(self.flush)

    def flush(self) -> None:
        """Write what a deferred save has not written yet."""
        if self._pending:
            self._write()

    def _write(self) -> None:
        self._pending = False
        write_json(self.path, {owner: held.to_json() for owner, held in self.held.items()}, durable=self.durable)


def _natural(item: str):
    """fpga2 before fpga10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", item)]
