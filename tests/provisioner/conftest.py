"""Real parts for the provisioner's tests: Debian's docker-registry on 127.0.0.1 (one open, one
behind token auth with a token server written here), a fake registry front for basic auth and
redirects, and per-test work dirs. Nothing outlives the tests: processes, mounts or temp dirs."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import uuid

import pytest
import requests

from corral.provisioner import Provisioner, ProvisionerFlags

from tests.provisioner.prov_images import Pusher

REGISTRY_BIN = "/usr/bin/docker-registry"


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0:
        for item in items:
            if "provisioner" in str(item.fspath):
                item.add_marker(pytest.mark.skip(reason="the provisioner's tests need root"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tmp():
    """A temp dir removed after the test (pytest's tmp_path keeps the last few around)."""
    path = tempfile.mkdtemp(prefix="corral-prov-test.")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def session_tmp():
    path = tempfile.mkdtemp(prefix="corral-prov-session.")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _our_mounts() -> list[str]:
    # Other work on this host mounts and unmounts meanwhile: look only under our temp dirs.
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if "/corral-prov-" in line.split()[4]]


@pytest.fixture(autouse=True)
def no_mounts_left():
    yield
    assert _our_mounts() == [], "a test left a mount behind"


class RegistryServer:
    def __init__(self, root: str, auth: dict | None = None):
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        os.makedirs(root)
        cfg = {"version": 0.1, "log": {"level": "error", "accesslog": {"disabled": True}},
               "storage": {"filesystem": {"rootdirectory": os.path.join(root, "data")},
                           "delete": {"enabled": True}},
               "http": {"addr": self.host}}
        if auth:
            cfg["auth"] = auth
        path = os.path.join(root, "config.yml")
        with open(path, "w") as f:
            json.dump(cfg, f)          # JSON is YAML
        self.proc = subprocess.Popen([REGISTRY_BIN, "serve", path], stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(root, "log"), "w"))
        deadline = time.monotonic() + 10
        while True:
            try:
                requests.get(f"{self.url}/v2/", timeout=1)
                break
            except requests.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"docker-registry did not start: {open(os.path.join(root, 'log')).read()}")
                time.sleep(0.02)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
def registry(session_tmp):
    server = RegistryServer(os.path.join(session_tmp, "registry"))
    server.push = Pusher(server.url)
    yield server
    server.stop()


# -- token auth ---------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """The docker token protocol: GET /token?service=&scope= with basic auth -> {"token": JWT}.
    Keys, certificate and signatures come from the openssl command."""

    def __init__(self, directory: str, users: dict):
        self.key_path = os.path.join(directory, "token.key")
        self.cert_path = os.path.join(directory, "token.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=corral-test-token", "-keyout", self.key_path, "-out", self.cert_path],
                       check=True, capture_output=True)
        pubkey = subprocess.run(["openssl", "x509", "-in", self.cert_path, "-noout", "-pubkey"],
                                check=True, capture_output=True).stdout
        der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pubkey,
                             check=True, capture_output=True).stdout
        kid = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
        self.kid = ":".join(kid[i:i + 4] for i in range(0, len(kid), 4))   # libtrust's key id
        self.users, self.requests = users, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
                server.requests.append((query, self.headers.get("Authorization")))
                auth = self.headers.get("Authorization", "")
                user = None
                if auth.startswith("Basic "):
                    user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                    if server.users.get(user) != password:
                        return self._send(401, {"details": "bad credentials"})
                if server.users and user is None:
                    return self._send(401, {"details": "credentials required"})
                self._send(200, {"token": server.token(query.get("service"), query.get("scope", ""), user or "")})

            def _send(self, status, body):
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def token(self, service: str, scope: str, subject: str) -> str:
        access = []
        for item in scope.split(" ") if scope else []:
            kind, name, actions = item.split(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {"iss": "corral-test", "sub": subject, "aud": service, "exp": now + 300, "nbf": now - 10,
                  "iat": now, "jti": uuid.uuid4().hex, "access": access}
        head = {"typ": "JWT", "alg": "RS256", "kid": self.kid}
        signing = f"{_b64(json.dumps(head).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", self.key_path], input=signing.encode(),
                                   check=True, capture_output=True).stdout          # RS256: PKCS#1 v1.5
        return f"{signing}.{_b64(signature)}"

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


# Module scope: its token server is a thread, and other tests fork from this process, which
# corral refuses to do while another thread runs.
@pytest.fixture(scope="module")
def token_registry(session_tmp):
    directory = os.path.join(session_tmp, "token")
    os.makedirs(directory)
    tokens = TokenServer(directory, {"alice": "secret"})
    server = RegistryServer(os.path.join(directory, "registry"), auth={"token": {
        "realm": tokens.url, "service": "corral-test-registry", "issuer": "corral-test",
        "rootcertbundle": tokens.cert_path}})
    server.tokens = tokens
    scope = "repository:secure/busybox:pull,push"
    token = tokens.token("corral-test-registry", scope, "alice")
    server.push = Pusher(server.url, {"Authorization": f"Bearer {token}"})
    yield server
    server.stop()
    tokens.stop()


# -- a registry front that asks for basic auth and redirects blobs to another host ---------


class Front:
    """Proxies /v2/ to a real registry after checking basic auth; redirects blob GETs to a
    separate blob host (as registries do to S3), which records the headers it was sent and can
    be told to corrupt what it serves."""

    def __init__(self, upstream: str, user: str, password: str):
        self.upstream, self.blob_headers, self.corrupt = upstream, [], set()
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        front = self

        class Base(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def relay(self, url, headers):
                r = requests.get(url, headers=headers, timeout=10)
                body = r.content
                if any(d in self.path for d in front.corrupt):
                    body = body[:-1] + bytes([body[-1] ^ 1])
                self.send_response(r.status_code)
                for key in ("Content-Type", "Docker-Content-Digest"):
                    if key in r.headers:
                        self.send_header(key, r.headers[key])
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Blobs(Base):
            def do_GET(self):
                front.blob_headers.append(dict(self.headers))
                self.relay(front.upstream + self.path, {})

        class Api(Base):
            def do_GET(self):
                if self.headers.get("Authorization") != expected:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="front"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if "/blobs/" in self.path:
                    self.send_response(307)
                    self.send_header("Location", f"{front.blobs_url}{self.path}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.relay(front.upstream + self.path, {"Accept": self.headers.get("Accept", "")})

        self.servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), h) for h in (Api, Blobs)]
        self.host = f"127.0.0.1:{self.servers[0].server_address[1]}"
        self.blobs_url = f"http://localhost:{self.servers[1].server_address[1]}"
        self.threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in self.servers]
        for t in self.threads:
            t.start()

    def stop(self):
        for s, t in zip(self.servers, self.threads):
            s.shutdown()
            s.server_close()
            t.join()


@pytest.fixture
def front(registry):
    server = Front(registry.url, "bob", "hunter2")
    yield server
    server.stop()


# -- provisioners -------------------------------------------------------------------------


@pytest.fixture
def make_provisioner(tmp):
    def make(registry: str, work: str | None = None, **flags) -> Provisioner:
        """A provisioner on a work dir of its own (or `work`, to share a store)."""
        work = work or tempfile.mkdtemp(prefix="work.", dir=tmp)
        return Provisioner(work, ProvisionerFlags(docker_registry=registry, **flags))
    return make
