"""`corral agent`: parse the flags, start the launch server, recover, serve the HTTP API.

The order matters: the Mesos containerizer's launch server is forked first, while this process
has one thread; only then do asyncio and aiohttp start (and the docker and external
containerizers' threads, when first used). SIGTERM or SIGINT stops the agent within a second,
whatever calls are open (a WAIT is cut, its client sees the connection close), and leaves its
containers running, as mesos-agent does: the next agent, which can start at once, re-attaches them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from corral.types import CorralError, InvalidInput

from . import custom_resources
from . import flags as agent_flags
from .checkpoint import Checkpoint
from .containerizer import make_containerizer
from .core import Agent
from .resources import Resources, detect


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--help" in argv or "-h" in argv:
        print(agent_flags.usage())
        return 0
    try:
        flags = agent_flags.parse(argv)
        total, units = custom_resources.settle(flags, detect(flags.resources or Resources(), flags.work_dir))
    except InvalidInput as e:
        print(f"corral agent: {e}", file=sys.stderr)
        return 2
    try:
        lock = Checkpoint(flags.work_dir).lock()     # held until this process and its launch server are gone
        containerizer = make_containerizer(flags, total, lock)     # forks the launch server: no thread yet
    except CorralError as e:
        print(f"corral agent: {e}", file=sys.stderr)
        return 1
    try:
        code = asyncio.run(_run(flags, total, units, containerizer))
    except CorralError as e:        # a damaged checkpoint with --strict, among others
        print(f"corral agent: {e}", file=sys.stderr)
        code = 1
    finally:
        containerizer.close()
    # A call still under way in the docker or external containerizer's threads (a pull, say)
    # would hold the interpreter's exit: like a SIGKILL's, it is the next agent's to see to.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


async def _run(flags, total: Resources, units: dict, containerizer) -> int:
    from aiohttp import web

    from .api import make_runner
    agent = Agent(flags, containerizer, total, units)
    await agent.recover()
    if flags.recover == "cleanup":
        await agent.cleanup()
        return 0
    stop: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda sig=sig: stop.done() or stop.set_result(sig))
    runner = make_runner(agent)
    master = None
    if flags.master:
        from .master import attach
        # The master's ShutdownMessage stops the agent as a SIGTERM does (it says why itself).
        master = await attach(agent, runner.app,
                              on_shutdown=lambda: stop.done() or stop.set_result(signal.SIGTERM))
    await runner.setup()
    site = web.TCPSite(runner, flags.ip, flags.port)
    try:
        await site.start()
    except OSError as e:
        await runner.cleanup()
        reason = os.strerror(e.errno) if e.errno else str(e)
        raise CorralError(f"cannot listen on {flags.ip}:{flags.port}: {reason}") from None
    print(f"corral agent {agent.agent_id} listening on {flags.ip}:{flags.port}", file=sys.stderr, flush=True)
    if master is not None:
        await master.start()
    sig = await stop
    print(f"corral agent {agent.agent_id} stopping on {signal.Signals(sig).name}; containers left running: "
          f"{len(agent.watchers)}", file=sys.stderr, flush=True)
    if master is not None:
        await master.close()
    await runner.cleanup()      # the calls under way get api.SHUTDOWN_GRACE to answer, then are cut
    agent.allocator.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
