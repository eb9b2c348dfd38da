"""The image store under `<work-dir>/provisioner/`: layers by digest, image records, locks.

    layers/<algo>-<hex>/     one extracted layer (overlay format), named by its diff_id or appc id
    images/<key>.json        one pulled image: reference, digest, layers bottom-up, config
    containers/<id>/         one container's rootfs (backends.py)
    meta/<layer>.json        what a layer's format keeps beside its files (an appc manifest)
    tmp/                     extractions in progress; renamed into layers/ only when verified
    locks/                   flock files

Everything lands by rename, so a crash or a bad blob leaves nothing half-written in layers/ or
images/. Pulls and provisions hold the store lock shared, prune holds it exclusive, so prune
never removes a layer a pull has just made but not yet recorded.

The store is root's alone (0700, tightened on open): its layers hold the images' setuid files
and file capabilities, which no local user may reach from the host (CVE-2021-41091's class).
A layer id names a directory, so every one is checked here (layer_path) before it does.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time

from corral.files import read_json, write_json

from .errors import InvalidImage
from .streams import check_digest

SUBDIRS = ("layers", "meta", "images", "containers", "tmp", "locks")
MAX_LAYERS = 500           # overlayfs stacks no more lower layers (OVL_MAX_STACK)


def check_layer_count(count: int, what: str) -> None:
    """InvalidImage for an image of more layers than a container could stack, before any is fetched."""
    if count > MAX_LAYERS:
        raise InvalidImage(f"{what}: {count} layers; an image has at most {MAX_LAYERS}")


def layer_id(digest: str) -> str:
    """'sha256:ab..' -> 'sha256-ab..' (overlayfs splits lowerdir on ':'); InvalidImage unless a digest."""
    return check_digest(digest).replace(":", "-", 1)


def check_layer_id(lid: str) -> str:
    """`lid` if it is a layer id ('sha256-<hex>', 'sha512-<hex>'...), else InvalidImage: an image
    (or a record) naming a layer '../../etc' would have the host's /etc mounted as that layer."""
    try:
        if not isinstance(lid, str) or ":" in lid:
            raise InvalidImage(lid)
        check_digest(lid.replace("-", ":", 1))
    except InvalidImage:
        raise InvalidImage(f"invalid layer id {lid!r}") from None
    return lid


class Store:
    def __init__(self, root: str):
        self.root = root
        os.makedirs(os.path.dirname(os.path.abspath(root)), exist_ok=True)
        for path in [root] + [os.path.join(root, sub) for sub in SUBDIRS]:
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                if os.stat(path).st_mode & 0o777 != 0o700:
                    os.chmod(path, 0o700)    # a store made before this rule was 0755

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    # -- locks ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, name: str, shared: bool = False, transient: bool = False):
        """An flock on locks/<name>: it excludes other processes and, taken through its own open
        file, other threads of this one too.

        A `transient` lock (exclusive) removes its file when released, so that locks named after
        images and layers do not pile up. A waiter may then hold a file that is gone: it checks,
        once it has the lock, that the path is still its file, and starts again if not."""
        path = self.path("locks", name)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
                if not transient or _same_file(fd, path):     # a name is always or never transient
                    break
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        try:
            yield
        finally:
            if transient and not shared:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            os.close(fd)

    @contextlib.contextmanager
    def lock_if_idle(self, name: str):
        """Yields True holding locks/<name> exclusive, or False at once if another holds it."""
        fd = os.open(self.path("locks", name), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
            else:
                yield True
        finally:
            os.close(fd)

    def using(self):
        """Held (shared) while pulling or provisioning; prune takes it exclusive."""
        return self.lock("store", shared=True)

    # -- layers ---------------------------------------------------------------------------

    def layer_path(self, lid: str) -> str:
        return self.path("layers", check_layer_id(lid))

    def meta_path(self, lid: str) -> str:
        return self.path("meta", f"{check_layer_id(lid)}.json")

    def has_layer(self, lid: str) -> bool:
        return os.path.isdir(self.layer_path(lid))

    def add_layer(self, lid: str, fill) -> bool:
        """Make layers/<lid> with fill(tmpdir) unless it exists; False if it already did.

        One process fills a layer at a time; a second waits on the lock, then finds it made.
        A layer is never replaced: containers may have it mounted.
        """
        import shutil                   # pulls only: these two cost a cold run 5 ms
        import tempfile
        final = self.layer_path(lid)
        with self.lock(f"layer-{lid}", transient=True):
            if os.path.isdir(final):
                return False
            tmp = tempfile.mkdtemp(prefix=f"{lid[:20]}.", dir=self.path("tmp"))
            try:
                fill(tmp)
                os.rename(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            return True

    # -- images ---------------------------------------------------------------------------

    def _image_file(self, reference: str) -> str:
        return self.path("images", hashlib.sha256(reference.encode()).hexdigest()[:32] + ".json")

    def image(self, reference: str) -> dict | None:
        record = read_json(self._image_file(reference), default=None)
        return record if record and record.get("reference") == reference else None

    def save_image(self, record: dict) -> dict:
        for lid in record["layers"]:
            if not self.has_layer(lid):
                raise InvalidImage(f"image {record['reference']}: layer {lid} is missing")
        record = dict(record, pulled=time.time())
        write_json(self._image_file(record["reference"]), record, durable=True)
        return record

    def images(self) -> list[dict]:
        records = []
        for name in sorted(os.listdir(self.path("images"))):
            if name.endswith(".json"):
                record = read_json(self.path("images", name), default=None)
                if record:
                    records.append(record)
        return sorted(records, key=lambda r: r["reference"])

    def remove_image(self, reference: str) -> bool:
        try:
            os.unlink(self._image_file(reference))
            return True
        except FileNotFoundError:
            return False

    # -- prune ----------------------------------------------------------------------------

    def prune(self, in_use: set[str], only: set[str] | None = None) -> list[str]:
        """Remove layers (of `only`, if given) no image record and no id in `in_use` names.
        The caller holds lock('store') exclusive."""
        keep = set(in_use)
        for record in self.images():
            keep.update(record["layers"])
        removed = []
        for lid in sorted(os.listdir(self.path("layers"))):
            if lid not in keep and (only is None or lid in only):
                with self.lock(f"layer-{lid}", transient=True):
                    _retire(self.path("layers", lid), self.path("tmp"))
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path("meta", f"{lid}.json"))
                removed.append(lid)
        # Lock files of image and layer names that stores before transient locks left; under the
        # exclusive store lock no pull holds one.
        for name in os.listdir(self.path("locks")):
            if name.startswith(("image-", "layer-")):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path("locks", name))
        self.clean_tmp()
        return removed

    def clean_tmp_if_idle(self) -> None:
        """clean_tmp, unless a pull or provision is under way (the store lock is busy)."""
        with self.lock_if_idle("store") as idle:
            if idle:
                self.clean_tmp()

    def clean_tmp(self) -> None:
        """Remove what crashed extractions left in tmp/ (only under the exclusive store lock)."""
        import shutil                   # recovery and prune only: 3 ms of a cold run
        for name in os.listdir(self.path("tmp")):
            shutil.rmtree(self.path("tmp", name), ignore_errors=True)


def _same_file(fd: int, path: str) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _retire(path: str, tmp: str) -> None:
    """Rename a directory out of sight first, so no reader ever sees it half removed."""
    import shutil                       # prune only: these two cost a cold run 5 ms
    import tempfile
    gone = tempfile.mkdtemp(prefix="gone.", dir=tmp)
    os.rename(path, os.path.join(gone, "x"))
    shutil.rmtree(gone)
