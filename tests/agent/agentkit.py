"""The agent tests' helpers: free ports, polling, an agent in the test's process, an agent as a
process. A module of its own (not conftest.py) so that tests can import it by a name no other
test directory uses."""

from __future__ import annotations

import asyncio
import base64
import os
import random

from corral.agent.ports import HostPorts


def free_port_block(size: int) -> int:
    """The first port of `size` consecutive ports below the ephemeral range that nothing uses now."""
    low = HostPorts().ephemeral().spans[0][0]
    bound = HostPorts().bound()
    for _ in range(200):
        base = random.randrange(20000, low - size)
        if not any(port in bound for port in range(base, base + size)):
            return base
    raise RuntimeError(f"no {size} free ports in a row below {low}")


async def until(predicate, timeout: float = 10.0) -> None:
    """Poll `predicate` every millisecond; fail the test (rather than hang) after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"still not true after {timeout}s: {predicate}")
        await asyncio.sleep(0.001)


class InProcessAgent:
    """An agent in the test's own process, its API on a free loopback port, with a client."""

    def __init__(self, flags):
        self.flags = flags

    async def __aenter__(self):
        from aiohttp import ClientSession, web

        from corral.agent.api import make_runner
        from corral.agent.containerizer import make_containerizer
        from corral.agent.core import Agent
        from corral.agent.custom_resources import settle
        from corral.agent.resources import Resources, detect
        total, units = settle(self.flags, detect(self.flags.resources or Resources(), self.flags.work_dir))
        # Its launch server is forked before the process below gets threads: launches go through it.
        self.containerizer = make_containerizer(self.flags, total)
        self.agent = Agent(self.flags, self.containerizer, total, units)
        await self.agent.recover()
        self.runner = make_runner(self.agent)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = "http://127.0.0.1:%d" % site._server.sockets[0].getsockname()[1]
        self.http = ClientSession()
        # As a real agent's process may: resolve a name, which asyncio does in a thread of its
        # executor. From here on this process cannot fork safely; the launch server can.
        await asyncio.get_running_loop().getaddrinfo("localhost", 5051)
        return self

    async def call(self, body, auth: tuple[str, str] | None = None, **kwargs):
        """POST /api/v1: (status, JSON answer or text)."""
        import json as _json
        data = body if isinstance(body, (str, bytes)) else _json.dumps(body)
        headers = kwargs.pop("headers", {"Content-Type": "application/json"})
        if auth:
            headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
        async with self.http.post(self.url + "/api/v1", data=data, headers=headers, **kwargs) as r:
            text = await r.text()
            try:
                return r.status, _json.loads(text)
            except ValueError:
                return r.status, text

    async def state(self) -> dict:
        """GET /state: the agent's own JSON, its containers' status streams among it."""
        async with self.http.get(self.url + "/state") as r:
            assert r.status == 200, await r.text()
            return await r.json()

    async def __aexit__(self, *exc):
        await self.http.close()
        await self.runner.cleanup()
        self.containerizer.close()


class AgentProcess:
    """`python -m corral.agent.main` as a real process, and a blocking client for its API."""

    def __init__(self, flags: list[str], port: int | None = None):
        """`port`: the API's port (a restarted agent's, say); a free one by default."""
        import subprocess
        import sys
        self.port = port or free_port_block(1)
        self.proc = subprocess.Popen([sys.executable, "-m", "corral.agent.main", *flags, f"--port={self.port}"],
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()
        if "listening on" not in line:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:   # it said something else first, and runs on: ours to stop
                self.proc.kill()
                self.proc.wait()
            raise AssertionError(f"the agent did not start: {line}{self.proc.stderr.read()}")
        # The Mesos containerizer's launch server is its first child (an agent without it has none).
        children = open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read().split()
        self.launch_server = int(children[0]) if children else None

    def call(self, body: dict, timeout: float = 30) -> tuple[int, object]:
        import json
        import urllib.error
        import urllib.request
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/api/v1", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as r:
                raw, status = r.read(), r.status
        except urllib.error.HTTPError as e:
            raw, status = e.read(), e.code
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode()

    def state(self, timeout: float = 30) -> dict:
        """GET /state: the agent's own JSON, its containers' status streams among it."""
        import json
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/state", timeout=timeout) as r:
            return json.loads(r.read())

    def sigkill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.proc.stderr.close()
        _wait_gone(self.launch_server)     # it sees the agent's end of its socket close

    def stop(self) -> int:
        self.proc.terminate()
        code = self.proc.wait(10)
        self.proc.stderr.close()
        _wait_gone(self.launch_server)
        return code


def _wait_gone(pid: int | None, timeout: float = 5) -> None:
    import time
    if pid is None:
        return
    deadline = time.monotonic() + timeout
    while os.path.exists(f"/proc/{pid}") and "Z" not in _state(pid):
        if time.monotonic() > deadline:
            raise AssertionError(f"the launch server {pid} outlived its agent")
        time.sleep(0.01)


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError):    # reaped meanwhile: a read can fail with ESRCH
        return "Z"
