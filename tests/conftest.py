"""Session fixtures shared by every test tier.

Test helpers live in ``tests/support`` (``from tests.support.images import ...``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import docker
import pytest

from tests.support.images import build_fixture


@pytest.fixture(scope="session", autouse=True)
def _engine_answers(request: pytest.FixtureRequest) -> None:
    """Stop the run with a clear message when tests that need the engine are collected but it is down."""
    if not any(
        item.get_closest_marker("engine") or item.get_closest_marker("browser")
        for item in request.session.items
    ):
        return
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        client = docker.from_env(timeout=10)
        client.ping()
        client.close()
    except Exception as exc:  # docker.errors.DockerException, requests' ConnectionError, PermissionError...
        pytest.exit(
            f"the Docker engine at {where} does not answer ({exc}).\n"
            "Start it (and the registry on 127.0.0.1:5000) with: bash scripts/setup.sh",
            returncode=3,
        )


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    client = docker.from_env(timeout=120)
    yield client
    client.close()


@pytest.fixture(scope="session")
def fixture_image(docker_client: docker.DockerClient) -> Callable[..., str]:
    """``fixture_image(name, tag="1.0.0", repo_prefix="dockext-test")``: builds it (once); returns the ref."""
    built: dict[tuple[str, str, str], str] = {}

    def build(name: str, *, tag: str = "1.0.0", repo_prefix: str = "dockext-test") -> str:
        key = (name, tag, repo_prefix)
        if key not in built:
            built[key] = build_fixture(docker_client, name, tag=tag, repo_prefix=repo_prefix)
        return built[key]

    return build
