"""An ordinary user for tests that run dockext without root: ``dockext-ci``, member of group ``docker``.

dockext is installed for it (non-editable) in a venv made with Debian's ``/usr/bin/python3`` under
``/var/tmp/dockext-unpriv``: the pyenv Python under ``/root`` is not readable by other users, and neither
may be the repo, so the sources are copied to a readable place first. The venv is rebuilt only when the
sources (``pyproject.toml``, ``README.md``, ``src/``) change. Its packages come from ``.venv/wheelhouse``
(``scripts/setup.sh``), never from an index: the tests run without a network. Needs root (as CI runs).
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.locks import locked

USER = "dockext-ci"
ROOT = Path("/var/tmp/dockext-unpriv")
SYSTEM_PYTHON = Path("/usr/bin/python3")


@dataclass(frozen=True)
class Unpriv:
    user: str
    uid: int
    gid: int
    home: Path
    python: Path
    dockext: Path

    @property
    def groups(self) -> list[int]:
        """The user's groups as a login would have them (``docker`` among them)."""
        return os.getgrouplist(self.user, self.gid)

    def env(self, **extra: str) -> dict[str, str]:
        path = f"{self.python.parent}:/usr/local/bin:/usr/bin:/bin"
        return {
            "HOME": str(self.home),
            "USER": self.user,
            "LOGNAME": self.user,
            "PATH": path,
            "LANG": "C.UTF-8",
            **extra,
        }

    def run(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """``subprocess.run`` as the user (uid, gid and groups), with its env; output captured as text."""
        kwargs.setdefault("env", self.env())
        kwargs.setdefault("cwd", self.home)
        kwargs.setdefault("timeout", 120)
        return subprocess.run(
            argv,
            user=self.uid,
            group=self.gid,
            extra_groups=self.groups,
            capture_output=True,
            text=True,
            check=False,
            **kwargs,
        )


def ensure_unprivileged(repo: Path) -> Unpriv:
    """Create (once) the user and its dockext venv from ``repo``'s sources; return where things are."""
    if os.geteuid() != 0:
        pytest.skip("creating the unprivileged test user needs root")
    try:
        docker_group = grp.getgrnam("docker")
    except KeyError:
        pytest.fail("there is no docker group: run bash scripts/setup.sh")
    ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
    ROOT.chmod(0o755)
    with locked(ROOT / "lock"):
        user = _ensure_user(docker_group)
        venv = ROOT / "venv"
        _ensure_venv(repo, venv)
    return Unpriv(
        user=USER,
        uid=user.pw_uid,
        gid=user.pw_gid,
        home=Path(user.pw_dir),
        python=venv / "bin" / "python",
        dockext=venv / "bin" / "dockext",
    )


def _ensure_user(docker_group: grp.struct_group) -> pwd.struct_passwd:
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--create-home",
                "--home-dir",
                f"/home/{USER}",
                "--shell",
                "/bin/sh",
                "--user-group",
                "--groups",
                "docker",
                USER,
            ],
            check=True,
            capture_output=True,
        )
    if USER not in grp.getgrnam("docker").gr_mem:
        subprocess.run(
            ["usermod", "--append", "--groups", docker_group.gr_name, USER], check=True, capture_output=True
        )
    user = pwd.getpwnam(USER)
    home = Path(user.pw_dir)
    if not home.is_dir():
        home.mkdir(parents=True)
        os.chown(home, user.pw_uid, user.pw_gid)
    return user


def _sources(repo: Path) -> list[Path]:
    files = [repo / "pyproject.toml"]
    if (repo / "README.md").is_file():
        files.append(repo / "README.md")
    files += sorted(
        p
        for p in (repo / "src").rglob("*")
        if p.is_file() and not any(part == "__pycache__" or part.endswith(".egg-info") for part in p.parts)
    )
    return files


def _ensure_venv(repo: Path, venv: Path) -> None:
    wheels = repo / ".venv" / "wheelhouse"
    if not (wheels / ".stamp").is_file():
        pytest.fail(f"no wheels for the unprivileged user's dockext in {wheels}: run bash scripts/setup.sh")
    files = _sources(repo)
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.relative_to(repo)} {os.access(f, os.X_OK)}\n".encode() + f.read_bytes())
    stamp = venv / ".dockext-sources"
    if stamp.is_file() and stamp.read_text() == h.hexdigest() and (venv / "bin" / "dockext").exists():
        return
    old_umask = os.umask(0o022)  # everything readable by the user
    try:
        build = ROOT / "src"
        shutil.rmtree(build, ignore_errors=True)
        for f in files:
            dest = build / f.relative_to(repo)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, dest)
        if not (venv / "bin" / "python").exists():
            subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", str(venv)], check=True, capture_output=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
        stamp.unlink(missing_ok=True)
        _run(
            [*pip, "uninstall", "-y", "dockext"], check=False
        )  # a path install of the same version may be a no-op
        _run([*pip, "install", "--no-index", "--find-links", str(wheels), str(build)])
        stamp.write_text(h.hexdigest())
    finally:
        os.umask(old_umask)


def _run(argv: list[str], check: bool = True) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
