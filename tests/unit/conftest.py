"""Fixtures of the unit tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_saved_logins(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Docker CLI configuration is an empty directory: no test reads the logins of the machine it runs on
    (dockext looks them up when a registry asks for one, dockext/logins.py)."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path_factory.mktemp("docker-config")))
