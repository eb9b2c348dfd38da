"""`corral pull`, `corral images`, `corral images rm`, `corral images prune`: ready for the `corral` command (corral/cli/).

corral/cli/options.py builds the `pull` and `images` parsers with pull_arguments and images_arguments and
dispatches to cmd_pull and cmd_images; cmd_images dispatches `images rm` and `images prune` itself. Every command returns an exit code
and raises CorralError (InvalidInput for bad input) for main() to print as one line.
Run standalone as `python -m corral.provisioner.cli pull REF`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from .core import Provisioner, ProvisionerFlags
from .options import add_options
from .progress import NoProgress


def pull_arguments(pull: argparse.ArgumentParser) -> None:
    add_options(pull)
    pull.add_argument("ref", metavar="REF",
                      help="docker: [registry/]name[:tag|@digest]; appc: name[:version][,k=v]")
    pull.add_argument("--image-type", choices=("docker", "appc"), default="docker")
    pull.add_argument("--force-pull", action="store_true",
                      help="ask the registry again even if the store has the image (a tag may have moved)")


def images_arguments(images: argparse.ArgumentParser) -> None:
    add_options(images)
    images.add_argument("--json", action="store_true")
    verbs = images.add_subparsers(dest="images_command", metavar="[rm|prune]", parser_class=type(images))
    rm = verbs.add_parser("rm", help="remove an image (its layers go at the next prune)")
    rm.add_argument("ref", metavar="NAME", help="as `corral images` lists it, or a reference as pull takes it")
    rm.add_argument("--image-type", choices=("docker", "appc"), default="docker")
    verbs.add_parser("prune", help="remove layers no stored image or container uses")


def provisioner(args) -> Provisioner:
    get = lambda name, default=None: getattr(args, name, default)   # noqa: E731
    flags = ProvisionerFlags(docker_registry=get("docker_registry") or ProvisionerFlags.docker_registry,
                             docker_insecure_registry=tuple(get("docker_insecure_registry") or ()),
                             docker_config=get("docker_config"), appc_store_dir=get("appc_store_dir"),
                             appc_simple_discovery_uri_prefix=get("appc_simple_discovery_uri_prefix"),
                             image_provisioner_backend=get("image_provisioner_backend"),
                             max_layer_size=get("max_layer_size") or ProvisionerFlags.max_layer_size)
    return Provisioner(args.work_dir, flags)


# -- commands -------------------------------------------------------------------------------


def cmd_pull(args) -> int:
    p = provisioner(args)
    key = p.resolve(args.ref, args.image_type)
    progress = _RichProgress() if sys.stdout.isatty() else _PlainProgress()
    started = time.monotonic()
    with progress:
        record = p.pull(args.ref, args.image_type, force=args.force_pull, progress=progress)
    layers = len(record["layers"])
    print(f"pulled {key} ({record['digest'][:19]}, {layers} layer{'s' * (layers != 1)}) "
          f"in {time.monotonic() - started:.1f}s")
    return 0


def cmd_images(args) -> int:
    verb = getattr(args, "images_command", None)
    if verb == "rm":
        return cmd_images_rm(args)
    if verb == "prune":
        return cmd_images_prune(args)
    records = provisioner(args).images()
    if getattr(args, "json", False):
        print(json.dumps(records, indent=2, sort_keys=True))
        return 0
    print(f"{'IMAGE':<50} {'TYPE':<6} {'DIGEST':<19} {'LAYERS':>6} {'SIZE':>9}  PULLED")
    for r in records:
        pulled = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.get("pulled", 0)))
        print(f"{r['reference']:<50} {r['type']:<6} {r['digest'][:19]:<19} {len(r['layers']):>6} "
              f"{_size(r.get('size') or 0):>9}  {pulled}")
    return 0


def cmd_images_rm(args) -> int:
    removed = provisioner(args).remove(args.ref, getattr(args, "image_type", "docker"))
    print(f"removed {removed}")
    return 0


def cmd_images_prune(args) -> int:
    removed = provisioner(args).prune()
    print(f"removed {len(removed)} unused layer{'s' * (len(removed) != 1)}")
    return 0


# -- progress -------------------------------------------------------------------------------


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


class _PlainProgress(NoProgress):
    """One line per layer, for logs and pipes."""

    def __init__(self):
        import threading                # pulls only: 1 ms of a cold `corral run --image`
        self.lock, self.sizes = threading.Lock(), {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def start(self, name, total):
        self.sizes[name] = 0

        def advance(n):
            self.sizes[name] += n
        return advance

    def finish(self, name, cached):
        with self.lock:
            what = "cached" if cached else f"fetched {_size(self.sizes.get(name, 0))}"
            print(f"layer {name[:19]}: {what}", flush=True)


class _RichProgress(NoProgress):
    """A bar per layer on a terminal."""

    def __init__(self):
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), transient=False)
        self.tasks = {}

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()
        return False

    def start(self, name, total):
        task = self.progress.add_task(name[:19], total=total)
        self.tasks[name] = [task, 0]

        def advance(n):
            self.tasks[name][1] += n
            self.progress.update(task, advance=n)
        return advance

    def finish(self, name, cached):
        if name not in self.tasks:
            self.progress.add_task(f"{name[:19]} cached", total=1, completed=1)
            return
        task, done = self.tasks[name]
        self.progress.update(task, total=done, completed=done)
