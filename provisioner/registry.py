"""A docker registry v2 client: manifests and blobs, the Bearer token dance, basic credentials.

Only what a pull needs. Redirects are followed by hand: a blob is often served from a storage
host that must not see the registry's Authorization header.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import urllib.parse

import requests
import urllib3
from requests.adapters import HTTPAdapter

from .errors import ImageNotFound, RegistryError
from .manifests import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST

ACCEPT = ", ".join([OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST])
MAX_MANIFEST = 4 << 20
MAX_TOKEN = 1 << 20
_REDIRECTS = (301, 302, 303, 307, 308)
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


def load_docker_config(value: str | None) -> dict:
    """`--docker-config`: a path to a docker config.json, or its JSON text (as Mesos takes it)."""
    if not value:
        return {}
    text = value
    if not value.lstrip().startswith("{"):
        try:
            with open(value) as f:
                text = f.read()
        except OSError as e:
            raise RegistryError(f"cannot read docker config {value}: {e.strerror}") from None
    try:
        return json.loads(text).get("auths") or {}
    except (ValueError, AttributeError):
        raise RegistryError(f"docker config {value}: not a JSON object with 'auths'") from None


def credentials_for(auths: dict, host: str) -> tuple[str, str] | None:
    hub = host == "registry-1.docker.io"
    for key in ([host, f"https://{host}", f"http://{host}", f"https://{host}/v1/", f"https://{host}/v2/"]
                + (["https://index.docker.io/v1/", "index.docker.io", "docker.io"] if hub else [])):
        entry = auths.get(key)
        if not entry:
            continue
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except ValueError:
                raise RegistryError(f"docker config: the auth for {key} is not base64 of user:password") from None
            return user, password
        if entry.get("username"):
            return entry["username"], entry.get("password", "")
    return None


class Registry:
    """One registry host. Thread-safe enough for concurrent blob downloads: tokens are cached
    per scope under a lock, and requests' connection pool is shared."""

    def __init__(self, host: str, scheme: str = "https", credentials: tuple[str, str] | None = None,
                 timeout: float = 30, connections: int = 8):
        self.host = host
        self.base = f"{scheme}://{host}"
        self.credentials = credentials
        self.timeout = timeout
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=connections)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._auth: dict[str, str] = {}        # scope -> Authorization header value
        self._lock = threading.Lock()

    def close(self) -> None:
        self.session.close()

    # -- the API --------------------------------------------------------------------------

    def manifest(self, repository: str, reference: str) -> tuple[str | None, bytes, str | None]:
        """(media type or None, body, Docker-Content-Digest or None)."""
        url = f"{self.base}/v2/{repository}/manifests/{reference}"
        with self._get(url, repository, {"Accept": ACCEPT}, f"manifest {repository}:{reference}") as r:
            body = r.raw.read(MAX_MANIFEST + 1, decode_content=True)
            if len(body) > MAX_MANIFEST:
                raise RegistryError(f"manifest {repository}:{reference} is larger than {MAX_MANIFEST} bytes")
            media_type = r.headers.get("Content-Type", "").split(";")[0].strip() or None
            return media_type, body, r.headers.get("Docker-Content-Digest")

    def blob(self, repository: str, digest: str) -> "_Blob":
        """The blob as a stream, to be used in a with block: `with registry.blob(...) as f: f.read(n)`."""
        return _Blob(self._get(f"{self.base}/v2/{repository}/blobs/{digest}", repository, {}, f"blob {digest}"),
                     f"registry {self.host}: blob {digest}")

    # -- plumbing -------------------------------------------------------------------------

    def _get(self, url: str, repository: str, headers: dict, what: str) -> requests.Response:
        scope = f"repository:{repository}:pull"
        for attempt in range(2):
            auth = self._auth.get(scope)
            r = self._follow(url, dict(headers, **({"Authorization": auth} if auth else {})))
            if r.status_code != 401 or attempt:
                break
            challenge = r.headers.get("WWW-Authenticate", "")
            r.close()
            self._authenticate(challenge, scope)
        if r.status_code == 200:
            return r
        r.close()
        if r.status_code == 404:
            raise ImageNotFound(f"{what} not found in {self.host}")
        if r.status_code in (401, 403):
            raise RegistryError(f"registry {self.host} refused access to {what} (HTTP {r.status_code})")
        raise RegistryError(f"registry {self.host} answered HTTP {r.status_code} for {what}")

    def _follow(self, url: str, headers: dict) -> requests.Response:
        """GET, following redirects; the Authorization header goes to the registry's own origin only."""
        origin = urllib.parse.urlsplit(self.base)[:2]
        for _ in range(6):
            try:
                r = self.session.get(url, headers=headers, stream=True, allow_redirects=False, timeout=self.timeout)
            except requests.RequestException as e:
                raise RegistryError(f"cannot reach registry {self.host}: {_reason(e)}") from None
            if r.status_code not in _REDIRECTS or "Location" not in r.headers:
                return r
            url = urllib.parse.urljoin(url, r.headers["Location"])
            r.close()
            if urllib.parse.urlsplit(url)[:2] != origin:
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        raise RegistryError(f"registry {self.host}: too many redirects")

    def _authenticate(self, challenge: str, scope: str) -> None:
        kind = challenge.split(" ", 1)[0].lower()
        if kind == "basic":
            if not self.credentials:
                raise RegistryError(f"registry {self.host} requires credentials: give them in --docker-config")
            user, password = self.credentials
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            with self._lock:
                self._auth[scope] = f"Basic {token}"
            return
        if kind != "bearer":
            raise RegistryError(f"registry {self.host} asks for unsupported authentication {challenge!r}")
        params = dict(_CHALLENGE.findall(challenge))
        realm = params.pop("realm", None)
        if not realm:
            raise RegistryError(f"registry {self.host} sent a Bearer challenge without a realm")
        params.setdefault("scope", scope)
        try:
            with requests.get(realm, params=params, auth=self.credentials, timeout=self.timeout, stream=True) as r:
                if r.status_code != 200:
                    raise RegistryError(f"the token server of {self.host} refused a token for {params['scope']} "
                                        f"(HTTP {r.status_code})")
                raw = r.raw.read(MAX_TOKEN + 1, decode_content=True)     # the registry names the server
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as e:
            raise RegistryError(f"cannot reach the token server of {self.host}: {_reason(e)}") from None
        if len(raw) > MAX_TOKEN:
            raise RegistryError(f"the token server of {self.host} sent more than {MAX_TOKEN >> 20} MiB")
        try:
            body = json.loads(raw)
            token = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"the token server of {self.host} sent no token")
        with self._lock:
            self._auth[scope] = f"Bearer {token}"


class _Blob:
    """A response body with read(n); a connection lost mid-stream is a RegistryError."""

    def __init__(self, response: requests.Response, what: str):
        self.response, self.what = response, what

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.response.close()

    def read(self, n: int = -1) -> bytes:
        try:
            return self.response.raw.read(n if n and n > 0 else 1 << 20)
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise RegistryError(f"{self.what}: the download failed: {_reason(e)}") from None


def _reason(error: BaseException) -> str:
    """What actually went wrong under a requests or urllib3 error: 'Connection refused', 'timed out'..."""
    found, stack = [], [error]
    while stack:
        e = stack.pop(0)
        if e is not None and all(e is not f for f in found):
            found.append(e)
            stack += [getattr(e, "reason", None), e.__cause__, e.__context__]
            stack += [a for a in e.args if isinstance(a, BaseException)]
    for e in reversed(found):                   # the innermost system error says it best
        if isinstance(e, OSError) and e.strerror and not isinstance(e, requests.RequestException):
            return e.strerror
    if any(isinstance(e, (requests.Timeout, urllib3.exceptions.ReadTimeoutError, TimeoutError)) for e in found):
        return "timed out"
    return str(error) or type(error).__name__
