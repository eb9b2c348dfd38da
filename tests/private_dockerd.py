"""A private dockerd for tests and benchmarks, and a busybox image built from busybox-static.

The daemon gets its own socket, data-root, exec-root, pidfile and cgroup parent under one
directory, no iptables rules and no default bridge, so it shares nothing with a host's docker
and leaves nothing behind once stop() has run. No image is ever pulled: busybox_image_tar()
writes a `docker save` archive from the host's /bin/busybox, and load_busybox() loads it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time

BUSYBOX_IMAGE = "corral-test/busybox:latest"


def _layer_tar(busybox: str) -> bytes:
    """One layer: /bin/busybox, a symlink per applet, and the few files a shell expects."""
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(name, data=None, kind=tarfile.REGTYPE, mode=0o755, link=""):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.linkname, info.mtime = kind, mode, link, 0
            info.size = len(data) if data is not None else 0
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
        for d in ("bin", "etc", "tmp", "root"):
            add(d, kind=tarfile.DIRTYPE, mode=0o1777 if d == "tmp" else 0o755)
        with open(busybox, "rb") as f:
            add("bin/busybox", f.read())
        for applet in applets:
            if applet != "busybox":
                add(f"bin/{applet}", kind=tarfile.SYMTYPE, link="busybox", mode=0o777)
        add("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n", mode=0o644)
        add("etc/group", b"root:x:0:\nnogroup:x:65534:\n", mode=0o644)
    return out.getvalue()


def busybox_image_tar(path: str, tag: str = BUSYBOX_IMAGE, busybox: str = "/bin/busybox") -> str:
    """Write a `docker save`-format archive of a one-layer busybox image to `path`."""
    layer = _layer_tar(busybox)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "corral tests: /bin/busybox"}],
    }, sort_keys=True).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    layer_dir = diff_id.split(":")[1]
    manifest = json.dumps([{"Config": config_name, "RepoTags": [tag],
                            "Layers": [f"{layer_dir}/layer.tar"]}]).encode()
    with tarfile.open(path, "w") as tar:
        for name, data in ((f"{layer_dir}/layer.tar", layer), (config_name, config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


class PrivateDockerd:
    """dockerd on unix://<top>/docker.sock, everything of it under `top`."""

    def __init__(self, top: str, cgroup_parent: str):
        """`cgroup_parent`: a name, made absolute for dockerd: a relative parent would nest its
        containers under dockerd's own cgroup in each hierarchy, which is not ours."""
        self.top = top
        self.cgroup_parent = cgroup_parent
        self.socket = os.path.join(top, "docker.sock")
        self.url = f"unix://{self.socket}"
        self.pidfile = os.path.join(top, "docker.pid")
        self.log_path = os.path.join(top, "dockerd.log")
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> None:
        os.makedirs(self.top, exist_ok=True)
        argv = ["dockerd", "--host", self.url,
                "--data-root", os.path.join(self.top, "data"), "--exec-root", os.path.join(self.top, "exec"),
                "--pidfile", self.pidfile, "--cgroup-parent", "/" + self.cgroup_parent,
                "--iptables=false", "--ip6tables=false", "--ip-masq=false", "--bridge=none",
                "--storage-driver=overlay2", "--log-level=warn"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.ping():
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited {self.proc.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"dockerd did not answer within {timeout}s; see {self.log_path}")
            time.sleep(0.05)

    def ping(self) -> bool:
        import http.client
        import socket
        conn = http.client.HTTPConnection("localhost", timeout=2)
        conn.sock = socket.socket(socket.AF_UNIX)
        try:
            conn.sock.connect(self.socket)
            conn.request("GET", "/_ping")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM our dockerd (by its pid) and wait; it stops its containers and containerd."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def docker(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        """The docker CLI, pointed at this daemon only."""
        env = dict(os.environ, DOCKER_HOST=self.url, DOCKER_CONFIG=os.path.join(self.top, "cli-config"))
        return subprocess.run(["docker", *args], env=env, capture_output=True, text=True, **kwargs)

    def load_busybox(self, tag: str = BUSYBOX_IMAGE) -> str:
        tar = busybox_image_tar(os.path.join(self.top, "busybox.tar"), tag)
        result = self.docker("load", "-i", tar)
        if result.returncode != 0:
            raise RuntimeError(f"docker load failed: {result.stderr.strip()}")
        return tag

    def remove(self) -> None:
        """Remove everything under `top` (after stop()); overlay mounts must already be gone."""
        shutil.rmtree(self.top, ignore_errors=True)
