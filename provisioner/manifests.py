"""Docker and OCI manifests: which kind a document is, which platform an index offers, what an image is made of."""

from __future__ import annotations

import json

from corral.record import Record

from .errors import ImageNotFound, InvalidImage
from .store import check_layer_count
from .streams import check_digest

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
INDEXES = (DOCKER_LIST, OCI_INDEX)
MANIFESTS = (DOCKER_MANIFEST, OCI_MANIFEST)
_LAYER_TYPES = ("application/vnd.docker.image.rootfs.diff.tar", "application/vnd.oci.image.layer.v1.tar")
CONFIG_KEYS = ("Entrypoint", "Cmd", "Env", "WorkingDir", "User")


def parse(body: bytes, media_type: str | None, what: str) -> tuple[str, dict]:
    """(media type, document). The body's own mediaType wins over the header; when both are
    absent (OCI allows it), the shape decides: `manifests` an index, `layers` a manifest."""
    try:
        doc = json.loads(body)
    except ValueError:
        raise InvalidImage(f"{what}: the manifest is not JSON") from None
    if not isinstance(doc, dict):
        raise InvalidImage(f"{what}: the manifest is not a JSON object")
    if doc.get("schemaVersion") == 1:
        raise InvalidImage(f"{what}: docker schema 1 manifests are not supported; push it again with a newer client")
    kind = doc.get("mediaType") or (media_type if media_type in INDEXES + MANIFESTS else None)
    if kind is None:
        kind = OCI_INDEX if "manifests" in doc else OCI_MANIFEST if "layers" in doc else None
    if kind not in INDEXES + MANIFESTS:
        raise InvalidImage(f"{what}: unsupported manifest type {kind or media_type!r}")
    return kind, doc


def _object(value) -> dict:
    """A JSON object of a document, or {} for what is absent or not an object."""
    return value if isinstance(value, dict) else {}


def _is_attestation(entry: dict) -> bool:
    # BuildKit lists provenance and SBOM documents beside the images, as platform unknown/unknown.
    annotations = _object(entry.get("annotations"))
    platform = _object(entry.get("platform"))
    return (annotations.get("vnd.docker.reference.type") == "attestation-manifest"
            or platform.get("os") == "unknown" or platform.get("architecture") == "unknown")


def select_platform(index: dict, want: dict, what: str) -> dict:
    """The index entry for `want` (os, architecture, variant): an exact variant first, then an
    entry that names none. Attestation entries are never candidates."""
    listed = index.get("manifests")
    entries = [e for e in listed if isinstance(e, dict) and not _is_attestation(e)] if isinstance(listed, list) else []
    matching = [e for e in entries
                if _object(e.get("platform")).get("os") == want["os"]
                and _object(e.get("platform")).get("architecture") == want["architecture"]]
    for preferred in (want.get("variant"), None):
        for entry in matching:
            if _object(entry.get("platform")).get("variant") == preferred:
                return entry
    if matching and not want.get("variant"):
        return matching[0]
    offered = sorted({n for e in entries if (n := _platform_name(_object(e.get("platform"))))}) or ["nothing"]
    wanted = _platform_name(want)
    raise ImageNotFound(f"{what} has no image for {wanted} (it offers {', '.join(offered)})")


def _platform_name(platform: dict) -> str:
    return "/".join(platform[k] for k in ("os", "architecture", "variant") if isinstance(platform.get(k), str))


class Layer(Record):
    digest: str       # of the blob as stored (compressed or not)
    diff_id: str      # of the uncompressed tar
    size: int | None


def image_parts(manifest: dict, config: dict, what: str) -> tuple[list[Layer], dict]:
    """The layers, bottom up, paired with the config's diff_ids; and the runtime config keys."""
    layers = manifest.get("layers")
    diff_ids = _object(config.get("rootfs")).get("diff_ids")
    if not isinstance(layers, list) or not isinstance(diff_ids, list):
        raise InvalidImage(f"{what}: the manifest or config lists no layers")
    if len(layers) != len(diff_ids):
        raise InvalidImage(f"{what}: the manifest has {len(layers)} layers but the config {len(diff_ids)} diff_ids")
    check_layer_count(len(layers), what)
    parts = []
    for entry, diff_id in zip(layers, diff_ids):
        entry = _object(entry)
        media_type = entry.get("mediaType", _LAYER_TYPES[1])
        if not isinstance(media_type, str) or not media_type.startswith(_LAYER_TYPES):
            raise InvalidImage(f"{what}: unsupported layer type {media_type!r}")
        size = entry.get("size")
        parts.append(Layer(check_digest(entry.get("digest")), check_digest(diff_id),
                           size if isinstance(size, int) and size >= 0 else None))
    return parts, runtime_config(config, what)


def runtime_config(config: dict, what: str) -> dict:
    """Entrypoint, Cmd, Env, WorkingDir and User of an image config; InvalidImage if one is not
    what docker writes (a list of strings, or a string), as a command made of them would not be."""
    inner = config.get("config") or {}
    if not isinstance(inner, dict):
        raise InvalidImage(f"{what}: the image config's config is not an object")
    runtime = {key: inner.get(key) for key in CONFIG_KEYS}
    for key, value in runtime.items():
        if key in ("WorkingDir", "User"):
            fits = value is None or isinstance(value, str)
        else:
            fits = value is None or (isinstance(value, list) and all(isinstance(v, str) for v in value))
        if not fits:
            raise InvalidImage(f"{what}: the image config's {key} is not "
                               f"{'a string' if key in ('WorkingDir', 'User') else 'a list of strings'}")
    return runtime
