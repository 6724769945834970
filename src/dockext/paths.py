"""Where dockext keeps its state: ``$DOCKEXT_HOME``, else platformdirs' user data dir."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

__all__ = ["Layout", "home", "layout"]


def home() -> Path:
    env = os.environ.get("DOCKEXT_HOME")
    if env:
        return Path(env).expanduser().absolute()
    return Path(platformdirs.user_data_dir("dockext", appauthor=False))


@dataclass(frozen=True)
class Layout:
    """The file layout of one dockext home (see docs/design.md, "State on disk")."""

    root: Path

    @property
    def extensions(self) -> Path:
        return self.root / "extensions"

    @property
    def guest_services(self) -> Path:
        return self.root / "gs"

    @property
    def staging(self) -> Path:
        return self.root / "staging"

    @property
    def lock_file(self) -> Path:
        return self.root / "lock"

    def extension_dir(self, key: str) -> Path:
        return self.extensions / key

    @property
    def owner(self) -> str:
        """This home's name on the engine: the ``dockext.copy`` label of the containers its commands make to copy
        files out of images, so that recovery removes its own and never another home's."""
        return hashlib.sha256(str(self.root).encode()).hexdigest()[:16]

    def ensure(self) -> None:
        """Create the layout; the home itself is private (it holds the server's token file)."""
        for d in (self.root, self.extensions, self.guest_services, self.staging):
            d.mkdir(mode=0o700 if d == self.root else 0o755, parents=True, exist_ok=True)
        if self.root.stat().st_mode & 0o077:
            self.root.chmod(0o700)


def layout() -> Layout:
    return Layout(home())
