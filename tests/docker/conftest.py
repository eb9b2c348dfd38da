"""The Docker containerizer's tests run on threads (the docker SDK): none may outlive its test.
The fixtures they use (dockerd, docker_env, rootfs) are tests/dockerd.py's."""

import pytest


@pytest.fixture(autouse=True)
def _no_threads_left(no_threads_left):
    yield
