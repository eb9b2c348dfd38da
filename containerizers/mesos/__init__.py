"""The Mesos containerizer: corral's native one. sync.py is its work (the launcher forks a
supervisor and init per container, the isolators confine it); containerizer.py its asyncio
face, launching through forkserver.py's launch server."""
