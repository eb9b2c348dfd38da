"""The Provisioner: the small synchronous API the containerizer calls.

    p = Provisioner(work_dir, ProvisionerFlags(...))
    p.pull("busybox:1.36")                    # into the store, once
    info = p.provision(container_id, "busybox:1.36")   # pulls first when missing
    ... make info.mounts in the container's mount namespace, pivot_root into info.rootfs ...
    p.destroy(container_id)
    p.recover(known_container_ids)            # after a restart: drop rootfses nobody knows
"""

from __future__ import annotations

import hashlib
import os

from corral.files import read_json, remove_tree, spread_subdirectories, write_json
from corral.record import Record
from corral.types import ContainerExists, CorralError, InvalidInput, check_container_id

from . import backends
from .backends import ProvisionInfo
from .options import DEFAULT_DOCKER_REGISTRY, DEFAULT_MAX_LAYER_SIZE
from .progress import NoProgress
from .errors import ImageNotFound
from .reference import DOCKER_HUB, host_platform, parse_appc, parse_docker, valid_host
from .store import Store

IMAGE_TYPES = ("docker", "appc")
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")


class ProvisionerFlags(Record):
    """The agent flags the provisioner reads, by their Mesos names."""
    docker_registry: str = DEFAULT_DOCKER_REGISTRY      # a URL, host[:port], or a directory of tarballs
    docker_insecure_registry: tuple[str, ...] = ()     # host:port names reached over plain http
    docker_config: str | None = None                   # a docker config.json path, or its JSON
    appc_store_dir: str | None = None
    appc_simple_discovery_uri_prefix: str | None = None
    image_provisioner_backend: str | None = None       # overlay, copy or bind; None: overlay if it works
    max_parallel_downloads: int = 4
    registry_timeout: float = 30
    max_layer_size: int = DEFAULT_MAX_LAYER_SIZE        # bytes a layer may unpack to (holes included)
    platform: dict | None = None                       # os, architecture, variant; None: the host's

    def __post_init__(self):
        if self.platform is None:
            self.platform = host_platform()


class Provisioner:
    def __init__(self, work_dir: str, flags: ProvisionerFlags | None = None):
        self.flags = flags or ProvisionerFlags()
        self.store = Store(os.path.join(work_dir, "provisioner"))
        self.backend = self.flags.image_provisioner_backend or backends.default_backend(self.store.root)
        if self.backend not in backends.BACKENDS:
            raise InvalidInput(f"unknown image provisioner backend {self.backend!r}: "
                               f"use one of {', '.join(backends.BACKENDS)}")
        self._registries: dict = {}
        registry = self.flags.docker_registry or DOCKER_HUB
        self.tar_store = registry[len("file://"):] if registry.startswith("file://") else (
            registry if registry.startswith(("/", ".")) else None)
        self.default_registry, self.default_scheme = _split_registry(registry)

    # -- references -----------------------------------------------------------------------

    def resolve(self, ref: str, image_type: str = "docker") -> str:
        """The canonical name an image is stored under."""
        kind = _image_type(image_type)
        if kind == "appc":
            return str(parse_appc(ref))
        return str(parse_docker(ref, "" if self.tar_store else self.default_registry))

    def image(self, ref: str, image_type: str = "docker") -> dict | None:
        return self.store.image(self.resolve(ref, image_type))

    # -- pull -----------------------------------------------------------------------------

    def pull(self, ref: str, image_type: str = "docker", force: bool = False, progress=None) -> dict:
        """The image's record, pulled into the store unless it is there. `force` resolves the
        reference again (a tag may have moved) and fetches the layers the store lacks. Concurrent
        pulls of one image, by threads or processes, fetch it once; the others wait and reuse it.
        A pull that fails leaves nothing: no record, no lock file, no layer that nothing uses."""
        kind = _image_type(image_type)
        key = self.resolve(ref, kind)
        progress = progress or NoProgress()
        image_lock = "image-" + hashlib.sha256(key.encode()).hexdigest()[:32]
        before = set(os.listdir(self.store.path("layers")))
        try:
            with self.store.using(), self.store.lock(image_lock, transient=True):
                if not force and (record := self.store.image(key)):
                    return record
                return self._pull(ref, kind, progress)
        except BaseException:
            self._discard_layers(set(os.listdir(self.store.path("layers"))) - before)
            raise

    def _pull(self, ref: str, kind: str, progress) -> dict:
        """Fetch the image into the store (the caller holds its lock); its saved record."""
        if kind == "appc":
            from .appc import AppcPuller
            puller = AppcPuller(self.store, self.flags.appc_store_dir,
                                self.flags.appc_simple_discovery_uri_prefix, self.flags.registry_timeout,
                                self.flags.max_layer_size)
            record = puller.pull(parse_appc(ref))
        elif self.tar_store:
            from .docker import pull_tarball
            record = pull_tarball(self.store, self.tar_store, parse_docker(ref, ""), progress,
                                  self.flags.max_layer_size)
        else:
            from .docker import pull_registry
            parsed = parse_docker(ref, self.default_registry)
            record = pull_registry(self.store, self._registry(parsed.registry), parsed, self.flags.platform,
                                   progress, self.flags.max_parallel_downloads, self.flags.max_layer_size)
        return self.store.save_image(record)

    def _registry(self, host: str):
        if host not in self._registries:
            from .registry import Registry, credentials_for, load_docker_config
            if host == self.default_registry and self.default_scheme:
                scheme = self.default_scheme
            elif host.rsplit(":", 1)[0] in _LOCAL_HOSTS or host in self.flags.docker_insecure_registry:
                scheme = "http"
            else:
                scheme = "https"
            creds = credentials_for(load_docker_config(self.flags.docker_config), host)
            self._registries[host] = Registry(host, scheme, creds, self.flags.registry_timeout,
                                              connections=max(4, self.flags.max_parallel_downloads))
        return self._registries[host]

    # -- images ---------------------------------------------------------------------------

    def images(self) -> list[dict]:
        return self.store.images()

    def remove(self, ref: str, image_type: str = "docker") -> str:
        """Forget an image, named as images() lists it or as a reference to resolve; the name it
        had. Its layers stay until prune(), as containers may still use them."""
        key = ref if self.store.image(ref) else self.resolve(ref, image_type)
        if not self.store.remove_image(key):
            raise ImageNotFound(f"no such image: {key}")
        return key

    def prune(self) -> list[str]:
        """Remove the layers no stored image and no container rootfs uses; the removed layer ids."""
        with self.store.lock("store"):
            return self.store.prune(self._layers_of_containers())

    def _layers_of_containers(self) -> set[str]:
        in_use = set()
        for cid in os.listdir(self.store.path("containers")):
            info = self.info(cid)
            if info is not None:
                in_use.update(os.path.basename(layer) for layer in info.layers)
        return in_use

    def _discard_layers(self, new: set[str]) -> None:
        """After a failed pull: remove the layers it made that nothing uses (a layer of the image
        that verified before another failed), if no other pull or provision is under way; else
        the next prune does."""
        if new:
            with self.store.lock_if_idle("store") as idle:
                if idle:
                    self.store.prune(self._layers_of_containers(), only=new)

    # -- containers -----------------------------------------------------------------------

    def _container_dir(self, container_id: str) -> str:
        return self.store.path("containers", check_container_id(container_id))

    def provision(self, container_id: str, ref: str, image_type: str = "docker") -> ProvisionInfo:
        """A new rootfs for the container from the image (pulled first if not in the store)."""
        directory = self._container_dir(container_id)
        record = self.image(ref, image_type) or self.pull(ref, image_type)
        with self.store.using():
            spread_subdirectories(os.path.dirname(directory))     # each rootfs in a block group of its own
            try:
                os.mkdir(directory, 0o700)
            except FileExistsError:
                raise ContainerExists(container_id) from None
            try:
                info = ProvisionInfo(container_id, os.path.join(directory, "rootfs"), self.backend,
                                     record["reference"], record["config"],
                                     layers=[self.store.layer_path(lid) for lid in record["layers"]])
                for layer in info.layers:
                    if not os.path.isdir(layer):
                        raise ImageNotFound(f"image {record['reference']}: layer {layer} is gone; pull it again")
                backends.build(self.backend, info, directory)
                write_json(os.path.join(directory, "provision.json"), info.to_dict())
            except BaseException:
                import shutil           # a failed provision only: shutil costs a cold run 3 ms
                shutil.rmtree(directory, ignore_errors=True)
                raise
        return info

    def info(self, container_id: str) -> ProvisionInfo | None:
        data = read_json(os.path.join(self._container_dir(container_id), "provision.json"), default=None)
        return ProvisionInfo.from_dict(data) if data else None

    def destroy(self, container_id: str) -> bool:
        """Remove the container's rootfs; False if it had none. Refuses while anything is mounted
        under it: those mounts are not ours to undo, and removing through them would reach the host."""
        directory = self._container_dir(container_id)
        if not os.path.isdir(directory):
            return False
        mounted = mounts_under(directory)
        if mounted:
            raise CorralError(f"cannot remove the rootfs of {container_id}: {mounted[0]} is mounted")
        with self.store.using():
            # Out of sight first, so no reader finds it half removed; a random suffix, as a crash
            # may have left this container's earlier rootfs there.
            gone = self.store.path("tmp", f"gone.{container_id}.{os.urandom(4).hex()}")
            os.rename(directory, gone)
            remove_tree(gone)
        return True

    def containers(self) -> list[str]:
        return sorted(os.listdir(self.store.path("containers")))

    def recover(self, known_ids) -> list[str]:
        """Remove the rootfs of every container not in `known_ids`; the ids removed. A rootfs
        still mounted somewhere is left for a later recovery."""
        self.store.clean_tmp_if_idle()
        known, removed = set(known_ids), []
        for cid in self.containers():
            if cid not in known:
                try:
                    if self.destroy(cid):
                        removed.append(cid)
                except CorralError:
                    pass
        return removed


def _split_registry(registry: str) -> tuple[str, str | None]:
    """(host[:port], scheme or None) of a registry flag: a URL or a bare host[:port]; InvalidInput
    if it is neither. By hand, as urllib.parse (and the ipaddress it imports) would cost every
    cold `corral run --image` 3 ms."""
    scheme, sep, rest = registry.partition("://")
    if not sep:
        scheme, rest = "", registry
    host = rest.split("/", 1)[0] or DOCKER_HUB
    if scheme.lower() not in ("", "http", "https") or not valid_host(host):
        raise InvalidInput(f"invalid docker registry {registry!r}: use a URL, host[:port] or a directory")
    return host, scheme.lower() or None


def mounts_under(path: str) -> list[str]:
    """Mount points at or below `path` in this process's mount namespace."""
    path = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = _unescape(line.split()[4])
            if point == path or point.startswith(path + "/"):
                found.append(point)
    return found


def _unescape(field_text: str) -> str:
    # mountinfo writes space, tab, newline and backslash as \ooo octal escapes.
    return bytes(field_text, "latin-1").decode("unicode_escape").encode("latin-1").decode("utf-8", "replace")


def _image_type(value: str | None) -> str:
    kind = (value or "docker").lower()
    if kind not in IMAGE_TYPES:
        raise InvalidInput(f"unknown image type {value!r}: use docker or appc")
    return kind
