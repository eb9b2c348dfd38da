"""appc images: `.aci` archives (a `manifest` and a `rootfs/`), from a store directory or by simple discovery.

An image's id is `sha512-` and the hex sha512 of its uncompressed tar, and each image is one
layer named by that id. Dependencies are pulled first and lie beneath the image, in order.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile

from corral.files import write_atomic
from corral.types import InvalidInput

from .errors import ImageNotFound, InvalidImage, RegistryError
from .extract import extract
from .reference import AppcRef, parse_appc
from .store import Store, check_layer_count
from .streams import Hashing, decompressed


def aci_name(ref: AppcRef) -> str:
    """Simple discovery's file name: {name}-{version}-{os}-{arch}.aci."""
    return f"{ref.name}-{ref.label('version')}-{ref.label('os')}-{ref.label('arch')}.aci"


def labels_match(manifest: dict, ref: AppcRef) -> bool:
    have = {item.get("name"): item.get("value") for item in manifest.get("labels") or []}
    return manifest.get("name") == ref.name and all(
        have.get(key) == value for key, value in ref.labels if not (key == "version" and value == "latest"))


class AppcPuller:
    def __init__(self, store: Store, store_dir: str | None, discovery_prefix: str | None, timeout: float = 30,
                 max_size: int | None = None):
        self.store = store
        self.store_dir = store_dir
        self.prefix = discovery_prefix
        self.timeout = timeout
        self.max_size = max_size            # of an image's layer unpacked, and of its download

    def pull(self, ref: AppcRef, _seen: tuple = ()) -> dict:
        if str(ref) in _seen:
            raise InvalidImage(f"appc image {ref}: its dependencies form a cycle")
        check_layer_count(len(_seen) + 1, f"appc image {ref}: with the dependencies above it")
        with self._fetch(ref) as path:
            image_id = self._id(path)
            manifest = self._unpack(path, image_id)
            size = os.path.getsize(path)
        if not labels_match(manifest, ref):
            raise InvalidImage(f"appc image {ref}: the archive's manifest names {manifest.get('name')!r} "
                               f"with other labels")
        layers: list[str] = []
        for dep in manifest.get("dependencies") or []:
            labels = {item["name"]: item["value"] for item in dep.get("labels") or []}
            try:
                dependency = parse_appc(dep["imageName"], labels)
            except InvalidInput as e:
                raise InvalidImage(f"appc image {ref}: dependency {e}") from None
            record = self.pull(dependency, _seen + (str(ref),))
            if dep.get("imageID") and dep["imageID"] not in (record["digest"], record["digest"][:len(dep["imageID"])]):
                raise InvalidImage(f"appc image {ref}: dependency {dep['imageName']} is {record['digest']}, "
                                   f"not {dep['imageID']}")
            layers += [lid for lid in record["layers"] if lid not in layers]
        layers.append(image_id)
        return {"reference": str(ref), "type": "appc", "digest": image_id, "layers": layers,
                "config": _runtime_config(manifest), "size": size}

    @contextlib.contextmanager
    def _fetch(self, ref: AppcRef):
        """The .aci as a local path: the store dir's copy, or a discovered file, downloaded to tmp/ if remote."""
        candidates = []
        if self.store_dir:
            candidates.append(os.path.join(self.store_dir, aci_name(ref)))
        if self.prefix and not self.prefix.startswith(("http://", "https://")):
            candidates.append(os.path.join(self.prefix, aci_name(ref)))
        for path in candidates:
            if os.path.isfile(path):
                yield path
                return
        if self.store_dir and os.path.isdir(self.store_dir):
            for path in _acis(self.store_dir):
                if labels_match(read_manifest(path), ref):
                    yield path
                    return
        if not (self.prefix or "").startswith(("http://", "https://")):
            raise ImageNotFound(f"appc image {ref} not found")
        tmp = tempfile.mkdtemp(dir=self.store.path("tmp"))
        try:
            yield self._download(self.prefix + aci_name(ref), os.path.join(tmp, "image.aci"), ref)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _download(self, url: str, path: str, ref: AppcRef) -> str:
        import requests
        try:
            with requests.get(url, stream=True, timeout=self.timeout) as r:
                if r.status_code == 404:
                    raise ImageNotFound(f"appc image {ref} not found at {url}")
                if r.status_code != 200:
                    raise RegistryError(f"{url} answered HTTP {r.status_code}")
                with open(path, "wb") as f:
                    for chunk in r.iter_content(1 << 20):
                        f.write(chunk)
                        if self.max_size is not None and f.tell() > self.max_size:
                            raise InvalidImage(f"appc image {ref}: {url} is larger than the layer size limit "
                                               f"({self.max_size} bytes; see --max-layer-size)")
        except requests.RequestException as e:
            raise RegistryError(f"cannot fetch {url}: {type(e).__name__}") from None
        return path

    def _id(self, path: str) -> str:
        with open(path, "rb") as f:
            return Hashing(decompressed(f), "sha512").verify().replace(":", "-")

    def _unpack(self, path: str, image_id: str) -> dict:
        manifest_path = self.store.meta_path(image_id)
        found = {}

        def keep(member, fileobj):
            if member.name.lstrip("./") == "manifest":
                found["manifest"] = fileobj.read(1 << 20)

        def fill(tmp):
            with open(path, "rb") as f:
                try:
                    extract(decompressed(f), tmp, strip="rootfs", keep=keep, max_size=self.max_size)
                except InvalidImage as e:
                    raise InvalidImage(f"appc image {path}: {e}") from None
            if "manifest" not in found:
                raise InvalidImage(f"{path}: no manifest in the archive")
            _manifest(found["manifest"], path)
            write_atomic(manifest_path, found["manifest"])

        self.store.add_layer(image_id, fill)
        with open(manifest_path, "rb") as f:
            return _manifest(f.read(), path)


def _manifest(raw: bytes, path: str) -> dict:
    try:
        manifest = json.loads(raw)
    except ValueError:
        raise InvalidImage(f"{path}: the appc manifest is not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("acKind") != "ImageManifest" or not _well_formed(manifest):
        raise InvalidImage(f"{path}: not an appc image manifest")
    return manifest


def _well_formed(manifest: dict) -> bool:
    """The fields corral reads have the types the appc spec gives them."""
    app, deps = manifest.get("app") or {}, manifest.get("dependencies") or []
    return (isinstance(manifest.get("name"), str) and _pairs(manifest.get("labels"))
            and isinstance(deps, list)
            and all(isinstance(d, dict) and isinstance(d.get("imageName"), str) and _pairs(d.get("labels"))
                    and isinstance(d.get("imageID") or "", str) for d in deps)
            and isinstance(app, dict) and _pairs(app.get("environment"))
            and isinstance(app.get("exec") or [], list) and all(isinstance(a, str) for a in app.get("exec") or [])
            and all(isinstance(app.get(key) or "", str) for key in ("user", "group", "workingDirectory")))


def _pairs(items) -> bool:
    """A list of {"name": str, "value": str} (labels, environment), or nothing."""
    return isinstance(items or [], list) and all(
        isinstance(i, dict) and isinstance(i.get("name"), str) and isinstance(i.get("value"), str) for i in items or [])


def read_manifest(path: str) -> dict:
    import tarfile
    with open(path, "rb") as f, tarfile.open(fileobj=decompressed(f), mode="r|") as tar:
        for member in tar:
            if member.name.lstrip("./") == "manifest" and member.isreg():
                return _manifest(tar.extractfile(member).read(1 << 20), path)
    return {}


def _acis(directory: str):
    for root, _, files in os.walk(directory):
        for name in sorted(files):
            if name.endswith(".aci"):
                yield os.path.join(root, name)


def _runtime_config(manifest: dict) -> dict:
    """The appc app section in docker's config keys: exec is the Entrypoint."""
    app = manifest.get("app") or {}
    user = app.get("user")
    if user and app.get("group"):
        user = f"{user}:{app['group']}"
    return {"Entrypoint": app.get("exec") or None, "Cmd": None,
            "Env": [f"{e['name']}={e['value']}" for e in app.get("environment") or []] or None,
            "WorkingDir": app.get("workingDirectory") or None, "User": user}
