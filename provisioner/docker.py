"""Docker and OCI images, from a registry or from a directory of `docker save` tarballs, into the store.

Each layer is read once: the bytes are hashed as they arrive (the blob digest), decompressed,
hashed again (the config's diff_id) and extracted, all in one stream; only a layer whose two
digests match is renamed into the store. Layers are keyed by diff_id, so images share them.
"""

from __future__ import annotations

import json
import os
import tarfile
import threading
from concurrent.futures import ThreadPoolExecutor

from corral.types import CorralError

from .errors import DigestMismatch, ImageNotFound, InvalidImage
from .extract import extract
from .progress import NoProgress
from .manifests import INDEXES, image_parts, parse, runtime_config, select_platform
from .reference import DockerRef
from .store import Store, check_layer_count, layer_id
from .streams import Hashing, check_digest, decompressed, digest_of


def unpack_layer(store: Store, diff_id: str, opener, digest: str | None = None, progress=None,
                 image: str = "", max_size: int | None = None) -> bool:
    """Stream the layer `opener()` yields into the store unless it is there; True if it was fetched.
    Past `max_size` bytes unpacked it is refused. Its errors name the image and the layer."""
    what = f"layer {digest or diff_id}"

    def fill(tmp: str) -> None:
        with opener() as raw:
            blob = Hashing(raw, digest or "sha256", what, progress)
            tar = Hashing(decompressed(blob), diff_id, f"{what} (uncompressed, diff_id)")
            try:
                try:
                    extract(tar, tmp, max_size=max_size)
                except CorralError as e:        # what the layer holds, or what the host refuses of it
                    raise type(e)(f"{what[:25]}: {e}") from None
                tar.verify()
            except (InvalidImage, DigestMismatch):
                blob.verify()               # a blob that is not what its digest says explains it better
                raise
            blob.verify()

    try:
        return store.add_layer(layer_id(diff_id), fill)
    except CorralError as e:
        if not image:
            raise
        raise type(e)(f"image {image}: {e}") from None


def pull_registry(store: Store, registry, ref: DockerRef, platform: dict, progress=None,
                  parallel: int = 4, max_layer_size: int | None = None) -> dict:
    """Resolve the reference at the registry and fetch the layers the store lacks. Layers are
    named by content, so one in the store is never fetched again (nor replaced: running
    containers may have it mounted)."""
    what, progress = str(ref), progress or NoProgress()
    try:
        media_type, body, _ = registry.manifest(ref.repository, ref.reference)
    except ImageNotFound:
        raise ImageNotFound(f"image {what} not found") from None
    top_digest = digest_of(body)
    if ref.digest and digest_of(body, ref.digest.split(":")[0]) != ref.digest:
        raise InvalidImage(f"{what}: the registry sent a manifest that does not match the digest")
    kind, doc = parse(body, media_type, what)
    if kind in INDEXES:
        entry = select_platform(doc, platform, what)
        check_digest(entry.get("digest"))
        media_type, body, _ = registry.manifest(ref.repository, entry["digest"])
        if digest_of(body, entry["digest"].split(":")[0]) != entry["digest"]:
            raise InvalidImage(f"{what}: the platform manifest does not match its digest in the index")
        kind, doc = parse(body, entry.get("mediaType") or media_type, what)
        if kind in INDEXES:
            raise InvalidImage(f"{what}: an index inside an index is not supported")
    config_digest = doc.get("config", {}).get("digest") if isinstance(doc.get("config", {}), dict) else None
    if not config_digest:
        raise InvalidImage(f"{what}: the manifest names no config")
    check_digest(config_digest)
    with registry.blob(ref.repository, config_digest) as reader:
        blob = Hashing(reader, config_digest, f"{what}: config")
        raw = _read_all(blob, f"{what}: the image config")
        blob.verify()
    config = _json(raw, f"{what}: the image config")
    if not isinstance(config, dict):
        raise InvalidImage(f"{what}: the image config is not a JSON object")
    layers, runtime = image_parts(doc, config, what)

    stop = threading.Event()

    def fetch(layer) -> None:
        lid = layer_id(layer.diff_id)
        if store.has_layer(lid):
            progress.finish(lid, cached=True)
            return
        report = progress.start(lid, layer.size)

        def advance(n: int) -> None:
            if stop.is_set():               # another layer failed, or the user interrupted
                raise PullStopped(f"{what}: pull stopped")
            if report:
                report(n)

        fetched = unpack_layer(store, layer.diff_id, lambda: registry.blob(ref.repository, layer.digest),
                               layer.digest, advance, image=what, max_size=max_layer_size)
        progress.finish(lid, cached=not fetched)

    _run_all(fetch, layers, parallel, stop)
    return {"reference": what, "type": "docker", "digest": top_digest,
            "layers": [layer_id(layer.diff_id) for layer in layers], "config": runtime,
            "size": sum(layer.size or 0 for layer in layers)}


def _read_all(reader, what: str, limit: int = 16 << 20) -> bytes:
    """All of a document (a config, a manifest) that is at most `limit` bytes; InvalidImage past it."""
    chunks, size = [], 0
    while chunk := reader.read(1 << 20):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise InvalidImage(f"{what} is larger than {limit >> 20} MB")
    return b"".join(chunks)


def _json(raw: bytes, what: str) -> dict:
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, (dict, list)):
        raise InvalidImage(f"{what} is not JSON") from None
    return value


class PullStopped(CorralError):
    pass


def _run_all(fn, items, parallel: int, stop: threading.Event) -> None:
    """fn over items on up to `parallel` threads. On the first error (or ^C) `stop` is set, which
    ends the other downloads at their next chunk; the first real error is raised once all have ended."""
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(items))), thread_name_prefix="pull") as pool:
        futures = [pool.submit(fn, item) for item in items]
        try:
            for future in futures:
                future.result()
        except BaseException:
            stop.set()
            pool.shutdown(cancel_futures=True)
            errors = [f.exception() for f in futures if not f.cancelled() and f.exception() is not None]
            real = next((e for e in errors if not isinstance(e, PullStopped)), None)
            if real is not None:
                raise real from None
            raise


def tarball_path(directory: str, ref: DockerRef) -> str:
    """Mesos's tar store: `<dir>/<name>:<tag>.tar`."""
    return os.path.join(directory, f"{ref.repository}:{ref.tag or 'latest'}.tar")


def pull_tarball(store: Store, directory: str, ref: DockerRef, progress=None,
                 max_layer_size: int | None = None) -> dict:
    what, progress = str(ref), progress or NoProgress()
    if ref.digest:
        raise ImageNotFound(f"{what}: a tar store is looked up by tag, not digest")
    path = tarball_path(directory, ref)
    try:
        archive = tarfile.open(path, "r:")
    except FileNotFoundError:
        raise ImageNotFound(f"image {what} not found: no {path}") from None
    except (OSError, tarfile.TarError) as e:
        raise InvalidImage(f"{path}: not a docker save tarball ({e})") from None
    with archive:
        entries = _json(_member(archive, "manifest.json", path), f"{path}: manifest.json")
        if not isinstance(entries, list) or not all(
                isinstance(e, dict) and isinstance(e.get("Config"), str)
                and isinstance(e.get("Layers"), list) and all(isinstance(n, str) for n in e["Layers"])
                for e in entries):
            raise InvalidImage(f"{path}: manifest.json is not a docker save manifest")
        tag = f"{ref.repository}:{ref.tag or 'latest'}"
        tagged = [e for e in entries if tag in (e.get("RepoTags") or [])]
        entry = (tagged or (entries if len(entries) == 1 else [None]))[0]
        if entry is None:
            raise ImageNotFound(f"{path} holds no image tagged {tag}")
        raw_config = _member(archive, entry["Config"], path)
        config = _json(raw_config, f"{path}: the image config")
        rootfs = config.get("rootfs") if isinstance(config, dict) else None
        diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        if not isinstance(diff_ids, list):
            raise InvalidImage(f"{path}: the image config is not a docker image config")
        if len(diff_ids) != len(entry["Layers"]):
            raise InvalidImage(f"{path}: {len(entry['Layers'])} layers but {len(diff_ids)} diff_ids")
        check_layer_count(len(diff_ids), path)
        lids = _layer_ids(diff_ids, f"{path}: the config")          # every one, before any is fetched
        for name, diff_id, lid in zip(entry["Layers"], diff_ids, lids):
            if store.has_layer(lid):
                progress.finish(lid, cached=True)
                continue
            member = _find(archive, name, path)
            fetched = unpack_layer(store, diff_id, lambda: archive.extractfile(member), None,
                                   progress.start(lid, member.size), image=what, max_size=max_layer_size)
            progress.finish(lid, cached=not fetched)
    return {"reference": what, "type": "docker", "digest": digest_of(raw_config),
            "layers": lids, "config": runtime_config(config, path), "size": os.path.getsize(path)}


def _layer_ids(diff_ids: list, what: str) -> list[str]:
    try:
        return [layer_id(d) for d in diff_ids]
    except InvalidImage as e:
        raise InvalidImage(f"{what}: {e}") from None


def _find(archive: tarfile.TarFile, name: str, path: str) -> tarfile.TarInfo:
    try:
        return archive.getmember(name)
    except KeyError:
        raise InvalidImage(f"{path} lacks {name}") from None


def _member(archive: tarfile.TarFile, name: str, path: str) -> bytes:
    """A small member (manifest.json, a config), read whole: not one of many gigabytes."""
    member = _find(archive, name, path)
    f = archive.extractfile(member) if member.isreg() else None
    if f is None:
        raise InvalidImage(f"{path}: {name} is not a file")
    with f:
        return _read_all(f, f"{path}: {name}")
