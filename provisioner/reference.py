"""Image references: `[registry/]name[:tag|@sha256:digest]` for docker, `name[:version][,label=value...]` for appc."""

from __future__ import annotations

import re

from corral.record import Record
from corral.types import InvalidInput

DOCKER_HUB = "registry-1.docker.io"
_HUB_ALIASES = {"docker.io", "index.docker.io", DOCKER_HUB}

# The distribution reference grammar, reduced to what a pull needs. Patterns, not compiled ones:
# re compiles (and caches) each on first use, and a cold run parses one reference.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME = rf"{_COMPONENT}(?:/{_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-fA-F:.]+\])(?::(\d{{1,5}}))?"


def valid_host(host: str) -> bool:
    """A registry's host[:port]: DNS labels, an IPv4 address or a bracketed IPv6 one, a port 1-65535."""
    match = re.fullmatch(_HOST, host)
    return bool(match) and (match[1] is None or 0 < int(match[1]) < 65536)


class DockerRef(Record):
    registry: str          # host[:port]; "" for a reference resolved against a local tar store
    repository: str        # library/busybox
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """What the registry's manifests endpoint takes: the digest when pinned, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        name = f"{self.registry}/{self.repository}" if self.registry else self.repository
        return name + (f"@{self.digest}" if self.digest else f":{self.tag or 'latest'}")


def parse_docker(text: str, default_registry: str = DOCKER_HUB) -> DockerRef:
    """Resolve a reference against the default registry host (a host[:port], not a URL)."""
    raw = (text or "").strip()
    bad = InvalidInput(f"invalid image reference {text!r}: use [registry/]name[:tag|@sha256:digest]")
    name, digest, tag = raw, None, None
    if "@" in name:
        name, digest = name.split("@", 1)
        if not re.fullmatch(_DIGEST, digest):
            raise bad
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
        if not re.fullmatch(_TAG, tag):
            raise bad
    registry = default_registry
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        if not valid_host(first):
            raise bad
        registry, name = first, rest
    if not re.fullmatch(_NAME, name):
        raise bad
    if registry in _HUB_ALIASES:
        registry = DOCKER_HUB
        if "/" not in name:
            name = f"library/{name}"
    return DockerRef(registry, name, None if digest else (tag or "latest"), digest)


def host_platform() -> dict:
    """The host as OCI names it: os, architecture and, on ARM, variant."""
    import os
    machine = os.uname().machine.lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "i686": "386",
            "i386": "386", "armv7l": "arm", "armv6l": "arm", "ppc64le": "ppc64le", "s390x": "s390x",
            "riscv64": "riscv64"}.get(machine, machine)
    variant = {"aarch64": "v8", "arm64": "v8", "armv7l": "v7", "armv6l": "v6"}.get(machine)
    return {"os": "linux", "architecture": arch, "variant": variant}


# appc names its architectures differently (appc spec, "Architectures").
_APPC_ARCH = {"amd64": "amd64", "386": "i386", "arm64": "aarch64", "arm": "armv7l", "ppc64le": "ppc64le",
              "s390x": "s390x"}
_APPC_NAME = r"[a-z0-9]+(?:[-./][a-z0-9]+)*"


class AppcRef(Record):
    name: str
    labels: tuple[tuple[str, str], ...] = ()

    def label(self, key: str) -> str | None:
        return dict(self.labels).get(key)

    def __str__(self) -> str:
        return ",".join([self.name] + [f"{k}={v}" for k, v in self.labels])


def parse_appc(text: str, labels: dict | None = None) -> AppcRef:
    """`example.com/app:1.0` or `example.com/app,version=1.0,arch=amd64`; version, os and arch
    default to latest and the host's, as appc's simple discovery needs all three."""
    raw = (text or "").strip()
    head, *pairs = raw.split(",")
    found = dict(labels or {})
    if ":" in head:
        head, found["version"] = head.rsplit(":", 1)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or not value:
            raise InvalidInput(f"invalid appc label {pair!r} in {text!r}: use name,key=value")
        found[key] = value
    if not re.fullmatch(_APPC_NAME, head):
        raise InvalidInput(f"invalid appc image name {head!r}: lower-case letters, digits and - . /")
    for key, value in found.items():
        # version, os and arch make a file name ({name}-{version}-{os}-{arch}.aci): no '/' may climb out of it.
        if not isinstance(value, str) or not value or "/" in value or "\0" in value:
            raise InvalidInput(f"invalid appc label {key}={value!r} in {text!r}: a value has no '/'")
    found.setdefault("version", "latest")
    found.setdefault("os", "linux")
    found.setdefault("arch", _APPC_ARCH.get(host_platform()["architecture"], "amd64"))
    return AppcRef(head, tuple(sorted(found.items())))
