from __future__ import annotations

from collections.abc import Callable

import docker
import pytest

from tests.support import images


@pytest.fixture
def push_fixture(docker_client: docker.DockerClient) -> Callable[[str], str]:
    """``push_fixture(ref)``: pushes a fixture image to the local registry; the local copy of that name goes."""
    return lambda ref: images.push_fixture(docker_client, ref)
