"""What can go wrong while pulling and provisioning, each a one-line CorralError."""

from __future__ import annotations

from corral.types import CorralError


class ImageNotFound(CorralError):
    """The registry, tar store or appc store has no such image."""


class RegistryError(CorralError):
    """The registry is unreachable, refused us, or answered something we cannot use."""


class DigestMismatch(CorralError):
    """A blob's content does not hash to the digest that names it."""


class InvalidImage(CorralError):
    """A manifest, config or layer breaks the format (or tries to write outside its rootfs)."""
