"""Pull and unpack a three-layer ~60 MB image from a local registry: corral against skopeo + umoci;
then the provision time of an already-pulled image. Run as root: `python bench/provision.py`.

Starts Debian's docker-registry on 127.0.0.1 (everything in a temp dir, removed at the end).
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "provisioner"))

from prov_images import Pusher, busybox_layer  # noqa: E402

from corral.provisioner import Provisioner, ProvisionerFlags  # noqa: E402


def bulk_layer(seed: int, files: int = 800, size: int = 25_000) -> bytes:
    """`files` files of ~`size` bytes, half random (incompressible), half text."""
    rng = random.Random(seed)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as t:
        for d in range(files // 100):
            info = tarfile.TarInfo(f"data{seed}/d{d}")
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            t.addfile(info)
        for i in range(files):
            data = rng.randbytes(size // 2) + (f"line {i} of layer {seed}\n" * (size // 40)).encode()
            info = tarfile.TarInfo(f"data{seed}/d{i // 100}/f{i}")
            info.size, info.mode = len(data), 0o644
            t.addfile(info, io.BytesIO(data))
    return out.getvalue()


def start_registry(root: str) -> tuple[subprocess.Popen, str]:
    import json
    import socket

    import requests
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        host = f"127.0.0.1:{s.getsockname()[1]}"
    config = os.path.join(root, "registry.yml")
    with open(config, "w") as f:
        json.dump({"version": 0.1, "log": {"level": "error", "accesslog": {"disabled": True}},
                   "storage": {"filesystem": {"rootdirectory": os.path.join(root, "registry")}},
                   "http": {"addr": host}}, f)
    proc = subprocess.Popen(["docker-registry", "serve", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(500):
        try:
            requests.get(f"http://{host}/v2/", timeout=1)
            return proc, host
        except requests.ConnectionError:
            time.sleep(0.02)
    proc.kill()
    raise SystemExit("docker-registry did not start")


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--provisions", type=int, default=200)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="corral-bench-provision.")
    proc = None
    try:
        proc, host = start_registry(root)
        layers = [_with_busybox(bulk_layer(1)), bulk_layer(2), bulk_layer(3)]
        Pusher(f"http://{host}").image("bench/image", "v1", layers, {"Cmd": ["/bin/sh"]}, how="gzip")
        size = sum(len(layer) for layer in layers)
        ref = f"{host}/bench/image:v1"
        print(f"image: {ref}, 3 gzip layers, {size / 1e6:.0f} MB uncompressed, {3 * 800} files")

        corral, corral_copy, tools = [], [], []
        for i in range(args.rounds):
            work = os.path.join(root, f"corral-{i}")
            p = Provisioner(work, ProvisionerFlags(docker_registry=host, image_provisioner_backend="overlay"))
            corral.append(timed(lambda: p.pull(ref)))
            copy = Provisioner(work, ProvisionerFlags(docker_registry=host, image_provisioner_backend="copy"))
            corral_copy.append(corral[-1] + timed(lambda: copy.provision("full", ref)))
            shutil.rmtree(work)

            oci, bundle = os.path.join(root, f"oci-{i}"), os.path.join(root, f"bundle-{i}")
            tools.append(timed(lambda: (
                subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{ref}",
                                f"oci:{oci}:v1"], check=True),
                subprocess.run(["umoci", "unpack", "--image", f"{oci}:v1", bundle], check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))))
            shutil.rmtree(oci)
            shutil.rmtree(bundle)

        work = os.path.join(root, "cached")
        p = Provisioner(work, ProvisionerFlags(docker_registry=host, image_provisioner_backend="overlay"))
        p.pull(ref)
        times = []
        for i in range(args.provisions):
            start = time.perf_counter()
            p.provision(f"c{i}", ref)
            times.append(time.perf_counter() - start)
            p.destroy(f"c{i}")
        times.sort()

        med = statistics.median
        print(f"pull + unpack, median of {args.rounds}:")
        print(f"  corral (layers unpacked, overlay-ready)      {med(corral) * 1000:8.0f} ms")
        print(f"  corral + copy backend (one full rootfs)      {med(corral_copy) * 1000:8.0f} ms")
        print(f"  skopeo copy + umoci unpack                   {med(tools) * 1000:8.0f} ms")
        print(f"  ratio corral / skopeo+umoci                  {med(corral) / med(tools):8.2f}")
        print(f"  ratio corral+copy / skopeo+umoci             {med(corral_copy) / med(tools):8.2f}")
        print(f"cached provision (overlay), {args.provisions} runs:")
        print(f"  p50 {times[len(times) // 2] * 1000:.2f} ms   p90 {times[int(len(times) * 0.9)] * 1000:.2f} ms"
              f"   max {times[-1] * 1000:.2f} ms   (target p50 <= 10 ms)")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def _with_busybox(layer: bytes) -> bytes:
    """The first layer also carries busybox, so the image is runnable."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as t:
        for source in (busybox_layer(), layer):
            with tarfile.open(fileobj=io.BytesIO(source)) as s:
                for member in s:
                    t.addfile(member, s.extractfile(member) if member.isreg() else None)
    return out.getvalue()


if __name__ == "__main__":
    main()
