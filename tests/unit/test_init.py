"""`dockext init DIR`: the project it writes, the values it asks for or derives, and what it refuses to touch.

The generated image is built, validated, installed and opened in tests/engine/test_init.py and
tests/e2e/test_init.py."""

from __future__ import annotations

import html
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from dockext import scaffold
from dockext.cli import cli
from tests.support.backends import UnixHTTPConnection

FILES = [
    "Dockerfile", "Makefile", "README.md", "backend/main.py", "icon.svg", "metadata.json",
    "ui/app.js", "ui/index.html", "ui/style.css",
]
TEMPLATE = Path(scaffold.__file__).parent / "templates" / "extension"
#: A name with every character that needs escaping somewhere: JSON, HTML, a Dockerfile LABEL, a shell.
ODD_NAME = 'Tom\'s "Best" <Ext> & $HOME \\ tool'


def init(*args: str):
    return CliRunner().invoke(cli, ["init", *args])


def tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def dockerfile_labels(dockerfile: str) -> dict[str, str]:
    """The LABEL lines of the generated Dockerfile, unquoted the way the Dockerfile parser does."""
    labels: dict[str, str] = {}
    block = dockerfile.split("LABEL ", 1)[1].split("\n\n", 1)[0]
    for line in block.splitlines():
        key, _, value = line.strip().rstrip("\\").strip().partition("=")
        if value.startswith("'"):
            labels[key] = value[1:-1]
        else:
            raw, out, i = value[1:-1], "", 0
            while i < len(raw):
                if raw[i] == "\\" and i + 1 < len(raw) and raw[i + 1] in '"$\\':
                    i += 1
                out += raw[i]
                i += 1
            labels[key] = out
    return labels


def test_init_writes_the_project_with_the_values_filled_in_for_each_kind_of_file(tmp_path):
    d = tmp_path / "tool"
    result = init(str(d), "--name", ODD_NAME, "--description", "Lists <things> & \"more\"",
                  "--repository", "acme/best-tool")
    assert result.exit_code == 0, result.output
    assert f'Created the extension {json.dumps(ODD_NAME)} in {d}: {", ".join(FILES)}' in result.output
    assert "make install-extension     # docker build -t acme/best-tool:latest ., then dockext install" in result.output
    assert tree(d) == FILES
    for name in FILES:
        assert "{{" not in (d / name).read_text(), name

    metadata = json.loads((d / "metadata.json").read_text())
    assert metadata == {
        "icon": "icon.svg",
        "vm": {"image": "${DESKTOP_PLUGIN_IMAGE}", "exposes": {"socket": "backend.sock"}},
        "ui": {"dashboard-tab": {"title": ODD_NAME, "src": "index.html", "root": "/ui"}},
    }
    page = (d / "ui" / "index.html").read_text()
    assert f"<title>{html.escape(ODD_NAME)}</title>" in page
    assert f"<h1>{html.escape(ODD_NAME)}</h1>" in page and "Lists &lt;things&gt; &amp; &quot;more&quot;" in page
    assert '<script type="module" src="app.js"></script>' in page

    dockerfile = (d / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=python:3.12-alpine\nFROM ${BASE_IMAGE}\n" in dockerfile
    assert 'CMD ["python3", "-u", "/backend/main.py"]' in dockerfile
    labels = dockerfile_labels(dockerfile)
    assert labels["org.opencontainers.image.title"] == ODD_NAME
    assert labels["org.opencontainers.image.description"] == 'Lists <things> & "more"'
    assert labels["org.opencontainers.image.vendor"] == "acme"
    assert labels["com.docker.desktop.extension.api.version"] == ">= 0.3.3"
    assert json.loads(labels["com.docker.extension.screenshots"])[0]["url"].startswith("https://")
    assert set(labels) >= {
        "com.docker.desktop.extension.icon", "com.docker.extension.detailed-description",
        "com.docker.extension.publisher-url", "com.docker.extension.changelog", "com.docker.extension.categories",
    }

    makefile = (d / "Makefile").read_text()
    assert "IMAGE ?= acme/best-tool\nTAG ?= latest\n" in makefile
    for target in ("build-extension", "install-extension", "update-extension", "validate-extension"):
        assert f"\n{target}:" in makefile
    assert "\n\t$(DOCKEXT) install -f $(IMAGE):$(TAG)\n" in makefile  # recipes start with a tab
    readme = (d / "README.md").read_text()
    assert readme.startswith(f"# {ODD_NAME}\n\nLists <things> & \"more\"\n")
    assert "docker build -t acme/best-tool:latest ." in readme
    # the files without placeholders are the template's own
    for name in ("backend/main.py", "ui/app.js", "ui/style.css", "icon.svg"):
        assert (d / name).read_bytes() == (TEMPLATE / name).read_bytes()


def test_without_a_terminal_the_values_come_from_the_directory_name(tmp_path, monkeypatch):
    monkeypatch.setenv("LOGNAME", "Jane.Doe")
    d = tmp_path / "cool_tool.v2"
    result = init(str(d))
    assert result.exit_code == 0, result.output
    assert json.loads((d / "metadata.json").read_text())["ui"]["dashboard-tab"]["title"] == "Cool Tool V2"
    assert "IMAGE ?= jane-doe/cool-tool-v2\n" in (d / "Makefile").read_text()
    labels = dockerfile_labels((d / "Dockerfile").read_text())
    assert labels["org.opencontainers.image.description"] == "Cool Tool V2: a Docker extension."
    assert labels["org.opencontainers.image.vendor"] == "jane-doe"


def test_a_directory_that_is_not_empty_is_refused_unless_forced_and_other_files_stay(tmp_path):
    d = tmp_path / "proj"
    d.mkdir()
    (d / "notes.txt").write_text("mine")
    (d / "Dockerfile").write_text("FROM old")
    refused = init(str(d), "--name", "X")
    assert refused.exit_code == 1
    assert f"Error: {d} is not empty (2 entries)" in refused.output
    assert "use --force to write the template's files into it" in refused.output
    assert tree(d) == ["Dockerfile", "notes.txt"] and (d / "Dockerfile").read_text() == "FROM old"

    forced = init(str(d), "--name", "X", "--force")
    assert forced.exit_code == 0, forced.output
    assert "Replaced the files that were there: Dockerfile" in forced.output
    assert tree(d) == sorted([*FILES, "notes.txt"])
    assert (d / "notes.txt").read_text() == "mine"
    assert (d / "Dockerfile").read_text().startswith("# Builds with plain `docker build .`")

    empty = tmp_path / "empty"
    empty.mkdir()
    assert init(str(empty)).exit_code == 0 and tree(empty) == FILES


def test_force_never_writes_through_a_link_to_outside_the_directory(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "metadata.json").write_text("precious")
    d = tmp_path / "proj"
    d.mkdir()
    (d / "metadata.json").symlink_to(outside / "metadata.json")
    assert init(str(d), "--force").exit_code == 0
    assert (outside / "metadata.json").read_text() == "precious"  # the link was replaced, not followed
    assert not (d / "metadata.json").is_symlink() and json.loads((d / "metadata.json").read_text())["ui"]

    d2 = tmp_path / "proj2"
    d2.mkdir()
    (d2 / "ui").symlink_to(outside, target_is_directory=True)
    (d2 / "backend").write_text("a file")
    result = init(str(d2), "--force")
    assert result.exit_code == 1
    assert f"Error: cannot write the template into {d2}: backend (a directory is needed, and it is a file); " \
           "ui (a directory is needed, and it is a link)" in result.output
    assert tree(outside) == ["metadata.json"]
    assert sorted(p.name for p in d2.iterdir()) == ["backend", "ui"]  # nothing written at all


@pytest.mark.parametrize(
    ("repository", "message"),
    [
        ("Acme/Tool", 'Error: the repository "Acme/Tool" is not lower case'),
        ("acme/tool:1.0", 'Error: the repository "acme/tool:1.0" has a tag or digest'),
        ("acme//tool", "the repository name has an empty path component"),
        ("acme/tool!", 'repository path component "tool!" is not valid'),
        ("", "invalid image reference \"\": it is empty"),
    ],
)
def test_a_bad_repository_is_refused_with_the_reason_and_nothing_is_written(tmp_path, repository, message):
    d = tmp_path / "proj"
    result = init(str(d), "--repository", repository)
    assert result.exit_code == 1
    assert message in result.output
    assert list(tmp_path.iterdir()) == []


def test_bad_names_a_file_as_dir_and_new_parents(tmp_path):
    result = init(str(tmp_path / "p"), "--name", "two\nlines")
    assert result.exit_code == 1
    assert "Error: the extension name contains a control character or line break (U+000A)" in result.output
    assert init(str(tmp_path / "p"), "--description", "  ").exit_code == 1
    (tmp_path / "file").write_text("x")
    result = init(str(tmp_path / "file"))
    assert result.exit_code == 1 and f"Error: {tmp_path / 'file'} exists and is not a directory" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]

    deep = tmp_path / "a" / "b" / "c"
    assert init(str(deep), "--name", "Deep").exit_code == 0
    assert tree(deep) == FILES
    assert [p.name for p in (tmp_path / "a" / "b").iterdir()] == ["c"]  # no temporary directory left beside it
    assert oct(deep.stat().st_mode & 0o777) == oct(0o777 & ~current_umask())


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_until(fd: int, text: str, seen: list[str]) -> str:
    deadline = time.monotonic() + 30
    while text not in "".join(seen):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {text!r} in {''.join(seen)!r}")
        if select.select([fd], [], [], 1)[0]:
            try:
                seen.append(os.read(fd, 4096).decode())
            except OSError:  # EIO: the child closed the terminal
                break
    return "".join(seen)


def test_in_a_terminal_it_asks_like_docker_desktop_and_asks_again_after_a_bad_answer(tmp_path):
    d = tmp_path / "my-tool"
    main, child = pty.openpty()
    env = {**os.environ, "NO_COLOR": "1", "LOGNAME": "jane"}
    proc = subprocess.Popen([sys.executable, "-m", "dockext.cli", "init", str(d)], stdin=child, stdout=child,
                            stderr=child, env=env, close_fds=True)
    os.close(child)
    seen: list[str] = []
    try:
        read_until(main, "Name [My Tool]: ", seen)
        os.write(main, b"Fancy Tool\n")
        read_until(main, "Description [Fancy Tool: a Docker extension.]: ", seen)
        os.write(main, b"Does fancy things\n")
        read_until(main, "Hub repository (eg. namespace/repository on hub) [jane/my-tool]: ", seen)
        os.write(main, b"Jane/Tool\n")
        read_until(main, 'Error: the repository "Jane/Tool" is not lower case', seen)
        os.write(main, b"jane/fancy\n")
        output = read_until(main, "Next steps:", seen)
        assert proc.wait(30) == 0, output
    finally:
        proc.kill()
        proc.wait()
        os.close(main)
    assert json.loads((d / "metadata.json").read_text())["ui"]["dashboard-tab"]["title"] == "Fancy Tool"
    assert "IMAGE ?= jane/fancy\n" in (d / "Makefile").read_text()
    assert dockerfile_labels((d / "Dockerfile").read_text())["org.opencontainers.image.description"] == \
        "Does fancy things"


def test_docker_extension_init_is_the_same_command(tmp_path):
    d = tmp_path / "via-plugin"
    proc = subprocess.run([sys.executable, "-m", "dockext.cliplugin", "extension", "init", str(d), "--name", "Via",
                           "--repository", "acme/via"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert tree(d) == FILES and "IMAGE ?= acme/via\n" in (d / "Makefile").read_text()
    usage = subprocess.run([sys.executable, "-m", "dockext.cliplugin", "extension", "init", "--help"],
                           capture_output=True, text=True)
    assert "Usage: docker extension init [OPTIONS] DIR" in usage.stdout
    assert "--repository NS/REPO" in usage.stdout


def test_the_generated_backend_answers_hello_on_its_socket_and_stops_on_sigterm(tmp_path):
    d = tmp_path / "proj"
    assert init(str(d)).exit_code == 0
    sock = tmp_path / "backend.sock"
    sock.write_text("stale")  # left by an earlier run
    proc = subprocess.Popen([sys.executable, str(d / "backend" / "main.py")], env={**os.environ, "SOCKET": str(sock)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == f"listening on {sock}\n"
        conn = UnixHTTPConnection(str(sock))
        conn.request("GET", "/hello")
        resp = conn.getresponse()
        assert (resp.status, resp.getheader("Content-Type")) == (200, "application/json")
        assert json.loads(resp.read()) == {"message": "Hello from the backend!"}
        conn.request("GET", "/other")  # the same connection: HTTP/1.1 keep-alive
        resp = conn.getresponse()
        assert (resp.status, json.loads(resp.read())) == (404, {"message": "no route for GET /other"})
        conn.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        proc.wait()


def test_every_placeholder_of_the_template_is_known():
    project = scaffold.Project("N", "D", "acme/n")
    assert sorted(scaffold.template_files()) == FILES
    scaffold.render(project)  # raises on a placeholder it has no value for
    with pytest.raises(KeyError, match="unknown placeholder"):
        scaffold.render(project, {"x": b"{{nope}}"})
