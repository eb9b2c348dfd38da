"""Image provisioning: docker/OCI and appc images to container root filesystems (issue: provisioner)."""
