"""Image provisioning: docker/OCI and appc images to container root filesystems (issue 3).

The containerizer's whole interface is in this namespace; see core.py for the shape of a launch.
Names load on first use (PEP 562): `corral run` without an image imports provisioner.options
only, and the rest would cost a cold launch ~8 ms (docs/ARCHITECTURE.md).
"""

import importlib

_WHERE = {
    "Mount": "corral.mounts", "ProvisionInfo": ".backends",
    "Command": ".command", "image_user": ".command", "merge_command": ".command",
    "read_image_file": ".command", "resolve_user": ".command",
    "Provisioner": ".core", "ProvisionerFlags": ".core",
    "DigestMismatch": ".errors", "ImageNotFound": ".errors", "InvalidImage": ".errors", "RegistryError": ".errors",
}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module 'provisioner' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name], __name__), name)
