"""A fuzz test of the agent's API (issue 9): thousands of random and mutated LAUNCH, WAIT, KILL
and REMOVE bodies, and READ_FILE, LIST_FILES, GET_CONTAINERS, SET_LOGGING_LEVEL and PRUNE_IMAGES ones, seeded and bounded in time, over loopback, to a real agent that launches
real containers. No answer is a 5xx, no connection is reset, nothing is logged as an error;
afterwards a normal launch works and nothing is left behind.

CORRAL_FUZZ_SEED=N picks another seed; CORRAL_FUZZ_SECONDS=S runs longer."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random

import aiohttp

from corral.agent import verbosity
from tests.agent.agentkit import InProcessAgent
from corral.types import TASK_FINISHED

SEED = int(os.environ.get("CORRAL_FUZZ_SEED", "9"))
SECONDS = float(os.environ.get("CORRAL_FUZZ_SECONDS", "12"))
MAX_REQUESTS = 20_000
CLIENTS = 8

IDS = ["f0", "f1", "f2", "f3", "f.4", "f-5"]
# Commands that end soon and do nothing outside their sandbox: a fuzzed string never names a
# program (none of the strings below is one), so a shell finds nothing to run.
COMMANDS = ["true", "exit 3", "sleep 0.05", "echo hi", "sleep 0.2; exit 1"]
STRINGS = ["", "x", "\ud800", "\udfff", "a\u0000b", "é", "\U0001f600", "../..", "/", "a" * 300, "root", "nobody",
           "SIGTERM", "9", "-1", "DOCKER", "MESOS", "APPC", "HOST", "NONE", "BRIDGE", "SCALAR", "RANGES", "SET",
           "mem", "cpus", "ports", "disk", "gpus", "*", "LAUNCH_CONTAINER", "WAIT_CONTAINER", "busybox",
           "nothing-here", "f0", "  ", "\n", "%s%n", "{}", "[]", "null"]
KEYS = ["value", "name", "type", "scalar", "ranges", "range", "begin", "end", "set", "item", "role", "reservations",
        "signal", "user", "hostname", "shell", "arguments", "environment", "variables", "image", "docker", "mesos",
        "appc", "network", "container", "command", "container_id", "resources", "path", "offset", "length", "level",
        "duration", "nanoseconds", "show_standalone", "show_nested", "excluded_images"]
NUMBERS = [0, 1, -1, 0.5, 31, 32, 1e308, -1e308, 2 ** 63, 2 ** 64 + 1, 10 ** 400, float("nan"), float("inf"),
           float("-inf"), -0.0, 65535, 65536]


def random_value(rng: random.Random, depth: int = 0):
    roll = rng.random()
    if roll < 0.1:
        return rng.choice([None, True, False])
    if roll < 0.35:
        return rng.choice(NUMBERS)
    if roll < 0.65:
        return rng.choice(STRINGS)
    if roll < 0.7:
        nested = []
        for _ in range(rng.choice([10, 100, 500])):
            nested = [nested]
        return nested
    if depth > 2:
        return rng.choice(STRINGS)
    if roll < 0.85:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(STRINGS + KEYS): random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


CONTAINER_CALLS = ["LAUNCH_CONTAINER", "WAIT_CONTAINER", "KILL_CONTAINER", "REMOVE_CONTAINER"]
OTHER_CALLS = ["READ_FILE", "LIST_FILES", "GET_CONTAINERS", "SET_LOGGING_LEVEL", "PRUNE_IMAGES"]
IN_SANDBOX = ["", "stdout", "stderr", "..", "../..", "../../meta", "x/../stdout", "stdout/", "nothing"]


def valid_body(rng: random.Random, sandboxes: str) -> dict:
    """A valid call; `sandboxes`: the directory of the containers' sandboxes (<work_dir>/containers)."""
    cid = rng.choice(IDS)
    kind = rng.choice(CONTAINER_CALLS * 2 + OTHER_CALLS)
    call: dict = {"container_id": {"value": cid}}
    if kind in ("READ_FILE", "LIST_FILES"):
        call = {"path": os.path.join(sandboxes, cid, rng.choice(IN_SANDBOX))}
        if kind == "READ_FILE":
            call["offset"] = rng.choice([0, 1, 5, "2"])
            if rng.random() < 0.5:
                call["length"] = rng.choice([0, 3, 1 << 20])
    elif kind == "GET_CONTAINERS":
        call = {"show_standalone": rng.random() < 0.8, "show_nested": rng.random() < 0.5}
    elif kind == "SET_LOGGING_LEVEL":
        call = {"level": rng.choice([0, 1, 3]), "duration": {"nanoseconds": rng.choice([1, 10 ** 6, 10 ** 8])}}
    elif kind == "PRUNE_IMAGES":
        call = {"excluded_images": [{"type": "DOCKER", "docker": {"name": "busybox"}}]}
    elif kind == "LAUNCH_CONTAINER":
        command: dict = {"value": rng.choice(COMMANDS)}
        if rng.random() < 0.2:
            command = {"shell": False, "value": "/bin/sh", "arguments": ["sh", "-c", rng.choice(COMMANDS)]}
        if rng.random() < 0.2:
            command["environment"] = {"variables": [{"name": "A", "value": "b"}]}
        if rng.random() < 0.1:
            command["user"] = "nobody"
        call["command"] = command
        call["resources"] = [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                             {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}]
        if rng.random() < 0.3:
            call["resources"].append({"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 1, "end": 2}]}})
        roll = rng.random()
        if roll < 0.15:
            call["container"] = {"type": "MESOS", "mesos": {"image": {"type": "DOCKER", "docker": {"name": "nothing"}}}}
        elif roll < 0.25:
            call["container"] = {"type": "DOCKER", "docker": {"image": "busybox", "network": "HOST"}}
        elif roll < 0.35:
            call["container"] = {"type": "MESOS", "hostname": "fuzz"}
    elif kind == "KILL_CONTAINER" and rng.random() < 0.5:
        call["signal"] = rng.choice(["SIGTERM", "KILL", 9, 15])
    return {"type": kind, kind.lower(): call}


def mutate(rng: random.Random, body):
    """Replace, delete or add one node somewhere in `body` (in place; the new root)."""
    parent, key = None, None
    node = body
    while isinstance(node, (dict, list)) and node and rng.random() < 0.75:
        parent, key = node, rng.choice(list(node) if isinstance(node, dict) else range(len(node)))
        node = node[key]
    roll = rng.random()
    if parent is None:
        return random_value(rng) if roll < 0.2 else body
    if roll < 0.6:
        parent[key] = random_value(rng)
    elif roll < 0.8:
        if isinstance(parent, dict):
            del parent[key]
        else:
            parent.pop(key)
    elif isinstance(parent, dict):
        parent[rng.choice(KEYS + STRINGS)] = random_value(rng)
    else:
        parent.append(random_value(rng))
    return body


def request(rng: random.Random, sandboxes: str) -> tuple[bytes, str]:
    """A body and its content type."""
    body = valid_body(rng, sandboxes)
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        body = mutate(rng, body)
    raw = json.dumps(body).encode()
    roll = rng.random()
    if roll < 0.04:
        raw = raw[:rng.randrange(len(raw) + 1)]                 # cut short
    elif roll < 0.06:
        raw = bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
    elif roll < 0.07:
        raw = raw.decode().encode("utf-16")
    content_type = "application/json"
    if rng.random() < 0.03:
        content_type = rng.choice(["text/plain", "application/json; charset=latin-1", "",
                                   "application/x-www-form-urlencoded"])
    return raw, content_type


def test_the_api_survives_thousands_of_random_and_mutated_calls(agent_flags, corral, caplog):
    caplog.set_level(logging.WARNING)

    async def scenario():
        async with InProcessAgent(agent_flags()) as a:
            server = a.containerizer.launch_server.pid
            rng = random.Random(SEED)
            sandboxes = os.path.join(os.path.abspath(corral.work_dir), "containers")
            answers: dict[int, int] = {}
            failures: list[str] = []
            deadline = asyncio.get_running_loop().time() + SECONDS
            timeout = aiohttp.ClientTimeout(total=20)

            async def client(rng: random.Random):
                async with aiohttp.ClientSession(timeout=timeout) as http:
                    while asyncio.get_running_loop().time() < deadline and sum(answers.values()) < MAX_REQUESTS:
                        raw, content_type = request(rng, sandboxes)
                        try:
                            async with http.post(a.url + "/api/v1", data=raw,
                                                 headers={"Content-Type": content_type}) as r:
                                text = await r.text(errors="replace")
                                answers[r.status] = answers.get(r.status, 0) + 1
                                if r.status >= 500:
                                    failures.append(f"{r.status} {text.strip()!r} for {raw[:300]!r}")
                        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                            failures.append(f"{type(e).__name__}: {e} for {raw[:300]!r}")
            await asyncio.gather(*(client(random.Random(rng.random())) for _ in range(CLIENTS)))
            total = sum(answers.values())
            assert not failures, f"seed {SEED}: {len(failures)} of {total} failed, such as: {failures[:5]}"
            assert total >= 1000, f"only {total} calls in {SECONDS}s: {answers}"
            assert answers.get(200, 0) > 50, answers             # real launches, waits and removals among them

            for container in (await a.state())["containers"]:
                cid = container["container_id"]["value"]
                await a.call({"type": "KILL_CONTAINER", "kill_container": {"container_id": {"value": cid}}})
                await a.call({"type": "WAIT_CONTAINER", "wait_container": {"container_id": {"value": cid}}})
                status, text = await a.call({"type": "REMOVE_CONTAINER",
                                             "remove_container": {"container_id": {"value": cid}}})
                assert status == 200, text
            assert a.agent.records == {} and a.agent.allocator.held == {} and a.agent.waiting == 0
            assert a.containerizer.launch_server.pid == server          # it never had to be replaced

            body = {"type": "LAUNCH_CONTAINER", "launch_container": {
                "container_id": {"value": "normal"}, "command": {"value": "exit 0"}}}
            assert (await a.call(body))[0] == 200
            _, waited = await a.call({"type": "WAIT_CONTAINER",
                                      "wait_container": {"container_id": {"value": "normal"}}})
            assert waited["wait_container"]["state"] == TASK_FINISHED
            assert (await a.call({"type": "REMOVE_CONTAINER",
                                  "remove_container": {"container_id": {"value": "normal"}}}))[0] == 200
            assert not os.listdir(os.path.join(corral.runtime_dir, "containers"))
            assert not os.listdir(os.path.join(corral.work_dir, "containers"))
    try:
        asyncio.run(scenario())
    finally:
        verbosity.VERBOSITY.set(0, 0)       # the process's logging as it was, for the tests after
    logged = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not logged, [r.getMessage() for r in logged[:5]]
