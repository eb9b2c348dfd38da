"""The Docker containerizer: containers run by a real dockerd.

    engine.py         dockerd's Engine API, the calls by name
    transport.py      how they reach dockerd (the docker SDK, or plain HTTP on its socket), and its errors
    create.py         a ContainerConfig as the Engine API's create body
    sync.py           SyncDockerContainerizer: the work, as blocking calls (the CLI's)
    containerizer.py  DockerContainerizer: its asyncio face (the agent's)

DockerContainerizer is imported on first use: the CLI has no use for asyncio or threads.
"""

from .engine import DEFAULT_SOCKET, DockerUnavailable, EngineError, NotFound, default_socket
from .create import LABEL_ID, LABEL_OWNER, NAME_PREFIX, SANDBOX
from .sync import SyncDockerContainerizer

__all__ = ["DEFAULT_SOCKET", "DockerUnavailable", "EngineError", "NotFound", "default_socket", "LABEL_ID",
           "LABEL_OWNER", "NAME_PREFIX", "SANDBOX", "SyncDockerContainerizer", "DockerContainerizer"]


def __getattr__(name: str):
    if name == "DockerContainerizer":
        from .containerizer import DockerContainerizer
        return DockerContainerizer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
