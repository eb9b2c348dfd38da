"""Image provisioning: docker/OCI and appc images to container root filesystems (issue 3).

The containerizer's whole interface is in this namespace; see core.py for the shape of a launch.
Importing it costs no more than the standard library: registry code (requests) loads on a pull.
"""

from .backends import Mount, ProvisionInfo
from .command import Command, image_user, merge_command, read_image_file, resolve_user
from .core import Provisioner, ProvisionerFlags
from .errors import DigestMismatch, ImageNotFound, InvalidImage, RegistryError

__all__ = ["Command", "DigestMismatch", "ImageNotFound", "InvalidImage", "Mount", "ProvisionInfo", "image_user",
           "Provisioner", "ProvisionerFlags", "RegistryError", "merge_command", "read_image_file",
           "resolve_user"]
