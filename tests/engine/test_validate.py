"""`dockext validate` / `docker extension validate` on real images, against the real engine and registry."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import run_dockext
from tests.support.images import FIXTURES_DIR, TEST_LABEL

pytestmark = pytest.mark.engine

PREFIX = "dockext-validate"
SCREENSHOTS_WARNING = '  - label "com.docker.extension.screenshots": is an empty array'


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


def leftovers(docker_client) -> list[str]:
    """Containers and images a validation may have left: copy containers, temporary installs and names."""
    # the list calls alone (the SDK's models inspect each one, and the other part of the suite, sharing the
    # engine, removes some in between: a 404)
    containers = [c["Names"][0].lstrip("/") for c in docker_client.api.containers(all=True)
                  if (c.get("Labels") or {}).get("dockext.copy", "").startswith("validate-")
                  or "dockext-validate-" in (c.get("Labels") or {}).get("dockext.extension", "")]
    tags = [t for i in docker_client.api.images() for t in i.get("RepoTags") or [] if t.startswith("dockext-validate-")]
    return containers + tags


def build(docker_client, context: Path, ref: str, labels: dict[str, str] | None = None) -> str:
    docker_client.images.build(path=str(context), tag=ref, labels={TEST_LABEL: "1", **(labels or {})},
                               rm=True, forcerm=True)
    return ref


@pytest.mark.parametrize("fixture", ["ui-only", "compose", "host-binary", "vm-image"])
def test_good_fixtures_are_valid_with_the_screenshots_warning(home, fixture_image, docker_client, fixture):
    ref = fixture_image(fixture, repo_prefix=PREFIX)
    out = run_dockext("validate", ref, home=home)
    lines = out.stdout.splitlines()
    assert lines[:3] == ["Checked image labels: 1 warning", "Checked metadata.json",
                         "Checked the files metadata.json names"]
    assert "Checked extension is compatible with API version 0.4.2" in lines
    assert SCREENSHOTS_WARNING in out.stdout
    assert lines[-1] == f'The extension image "{ref}" is valid (1 warning).'
    quiet = run_dockext("validate", "--errors-only", ref, home=home)
    assert "Warnings" not in quiet.stdout and "screenshots" not in quiet.stdout
    assert quiet.stdout.splitlines()[-1] == f'The extension image "{ref}" is valid.'
    assert not home.exists()  # validating installs nothing
    assert leftovers(docker_client) == []


@pytest.mark.parametrize(
    ("fixture", "step", "problem"),
    [
        ("bad-no-metadata", "Checked metadata.json: 1 error",
         "  - metadata.json: the image has no /metadata.json: it is not a Docker extension"),
        ("bad-json", "Checked metadata.json: 1 error", "  - metadata.json: is not valid JSON: "),
        ("bad-missing-root", "Checked the files metadata.json names: 1 error",
         "  - ui.dashboard-tab.root: /ui does not exist in the image"),
        ("bad-root-symlink", "Checked the files metadata.json names: 1 error",
         '  - ui.dashboard-tab.root: /ui is a symbolic link (to "/etc"), not a directory'),
        ("bad-binary-dotdot", "Checked metadata.json: 1 error",
         '  - host.binaries[0].linux[0].path: "/linux/../../etc/passwd": ".." is not allowed'),
    ],
)
def test_broken_fixtures_are_reported_with_the_field_and_a_fix(home, fixture_image, docker_client, fixture, step,
                                                               problem):
    ref = fixture_image(fixture, repo_prefix=PREFIX)
    out = run_dockext("validate", ref, home=home, check=False)
    assert out.returncode == 1, out.stdout + out.stderr
    assert step in out.stdout.splitlines()
    lines = out.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(problem))
    assert lines[at + 1].startswith("    fix: ")
    assert f'The extension image "{ref}" is not valid: 1 error.' in lines
    assert "Please fix the errors above and run the validate command again" in out.stdout
    assert out.stderr == "" and "Traceback" not in out.stdout
    assert leftovers(docker_client) == []



def test_a_compose_file_that_compose_refuses_is_reported_as_install_would_refuse_it(home, fixture_image,
                                                                                     docker_client, tmp_path):
    """dockext's own reading accepts a key Compose does not know; install reads the file with `docker compose
    config` and refuses it at staging. validate says so first, with Compose's reason, and a file that names the
    extension's own project (its Compose project, as install names it) is not flagged."""
    base = fixture_image("compose", repo_prefix=PREFIX)
    text = (FIXTURES_DIR / "compose" / "docker-compose.yaml").read_text()
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {base}\nCOPY docker-compose.yaml /\n")
    (ctx / "docker-compose.yaml").write_text(text.replace("    hostname: compose-api\n",
                                                          "    hostname: compose-api\n    not-a-compose-key: 1\n"))
    refused = build(docker_client, ctx, f"{PREFIX}/compose:7.0.0")
    out = run_dockext("validate", refused, home=home, check=False)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Checked the files metadata.json names: 1 error" in out.stdout.splitlines()
    assert ("  - vm.composefile: Docker Compose cannot use it: services.server additional properties "
            "'not-a-compose-key' not allowed") in out.stdout
    assert "docker compose config" in out.stdout and str(tmp_path) not in out.stdout
    project = f"{PREFIX}_compose-desktop-extension"
    named = f"    hostname: compose-api\n    container_name: {project}-api\n"
    (ctx / "docker-compose.yaml").write_text(text.replace("    hostname: compose-api\n", named))
    own = build(docker_client, ctx, f"{PREFIX}/compose:7.0.1")
    out = run_dockext("validate", own, home=home)
    assert out.stdout.splitlines()[-1] == f'The extension image "{own}" is valid (1 warning).'
    assert not home.exists() and leftovers(docker_client) == []
    for ref in (refused, own):
        docker_client.images.remove(ref, noprune=True)


def test_every_problem_of_an_image_is_listed(home, docker_client, tmp_path):
    """One image with many problems: all of them are printed, not only the first."""
    ctx = tmp_path / "ctx"
    (ctx / "ui").mkdir(parents=True)
    (ctx / "ui" / "other.html").write_text("<p>hi</p>")
    (ctx / "linux").mkdir()
    (ctx / "linux" / "tool").write_text("#!/bin/sh\necho hi\n")  # not executable
    (ctx / "docker-compose.yaml").write_text("services:\n  dockext-sockperm:\n    image: busybox\n")
    (ctx / "metadata.json").write_text(json.dumps({
        "icon": "missing.svg",
        "name": "obsolete",
        "ui": {"dashboard-tab": {"title": "Many Problems", "root": "/ui", "src": "index.html"}},
        "vm": {"composefile": "docker-compose.yaml", "exposes": {"socket": "dir/backend.sock"}},
        "host": {"binaries": [{"linux": [{"path": "/linux/tool"}, {"path": "/linux/../etc/passwd"}]}]},
    }))
    (ctx / "Dockerfile").write_text(
        "FROM scratch\n"
        'LABEL org.opencontainers.image.title="Many Problems" com.docker.desktop.extension.api.version=">= 9.0"\n'
        "COPY metadata.json docker-compose.yaml /\nCOPY ui /ui\nCOPY linux /linux\n"
    )
    ref = build(docker_client, ctx, f"{PREFIX}/many-problems:latest")
    try:
        out = run_dockext("validate", ref, home=home, check=False)
    finally:
        docker_client.images.remove(ref, force=True)
    assert out.returncode == 1, out.stderr
    errors = out.stdout.split("Errors (")[1].split("Warnings (")[0]
    for expected in [
        '  - label "org.opencontainers.image.description": is missing or empty',
        '  - label "org.opencontainers.image.vendor": is missing or empty',
        '  - label "com.docker.desktop.extension.icon": is missing or empty',
        '  - vm.exposes.socket: "dir/backend.sock" must be a plain file name, without / or \\',
        '  - host.binaries[0].linux[1].path: "/linux/../etc/passwd": ".." is not allowed',
        "  - icon: /missing.svg does not exist in the image",
        "  - ui.dashboard-tab.src: /ui/index.html does not exist in the UI root",
        "  - vm.composefile: service name 'dockext-sockperm' is reserved by dockext",
    ]:
        assert expected in errors, out.stdout
    assert errors.startswith("8):")
    warnings = out.stdout.split("Warnings (")[1]
    for expected in [
        '  - label "com.docker.extension.changelog": is missing or empty',
        "  - name: is obsolete and ignored",
        "  - host.binaries[0].linux[0].path: /linux/tool is not executable",
        '  - tag: "latest" is not a semantic version',
        '  - label "com.docker.desktop.extension.api.version": (">= 9.0") is incompatible with the current API '
        'version "0.4.2"',
    ]:
        assert expected in warnings, out.stdout
    assert f'The extension image "{ref}" is not valid: 8 errors.' in out.stdout


def test_sdk_compatibility_is_strict_about_the_api_version(home, docker_client):
    ref = build(docker_client, FIXTURES_DIR / "ui-only", f"{PREFIX}/bare-api:1.0.0",
                {"com.docker.desktop.extension.api.version": "0.3.3"})
    try:
        lenient = run_dockext("validate", ref, home=home)
        strict = run_dockext("validate", "--sdk-compatibility", ref, home=home, check=False)
    finally:
        docker_client.images.remove(ref, force=True)
    assert "api.version" not in lenient.stdout
    assert strict.returncode == 1
    assert "Checked extension is compatible with API version 0.4.2 (strict): 1 error" in strict.stdout
    assert ('  - label "com.docker.desktop.extension.api.version": ("0.3.3") is incompatible with the current API '
            'version "0.4.2"') in strict.stdout
    assert '    fix: Consider changing it to ">= 0.3.3"' in strict.stdout


def test_auto_resolve_tag_takes_the_greatest_local_semver_tag(home, fixture_image, docker_client):
    for tag in ("1.2.0", "1.10.0", "1.9.0"):
        fixture_image("ui-only", tag=tag, repo_prefix=PREFIX)
    docker_client.images.get(f"{PREFIX}/ui-only:1.9.0").tag(f"{PREFIX}/ui-only", "nightly")
    try:
        out = run_dockext("validate", "--auto-resolve-tag", f"{PREFIX}/ui-only", home=home)
    finally:
        docker_client.images.remove(f"{PREFIX}/ui-only:nightly")
    assert out.stdout.splitlines()[0] == "Tag not specified, greatest semver tag resolved: 1.10.0"
    assert f'The extension image "{PREFIX}/ui-only:1.10.0" is valid (1 warning).' in out.stdout
    none = run_dockext("validate", "--auto-resolve-tag", f"{PREFIX}/no-such-extension", home=home, check=False)
    assert none.returncode == 1
    assert f"Error: no local image of {PREFIX}/no-such-extension has a semantic-version tag" in none.stderr


def test_an_image_only_in_the_registry_is_pulled(home, fixture_image, push_fixture, docker_client):
    remote = push_fixture(fixture_image("host-binary", repo_prefix=PREFIX))
    try:
        out = run_dockext("validate", remote, home=home)
    finally:
        docker_client.images.remove(remote)
    assert f"Image not available locally, pulling {remote}..." in out.stdout
    assert "Pulled image" in out.stdout
    assert f'The extension image "{remote}" is valid (1 warning).' in out.stdout
    missing = run_dockext("validate", "127.0.0.1:5000/dockext-validate/nope:9.9.9", home=home, check=False)
    assert missing.returncode == 1 and "Error: cannot pull 127.0.0.1:5000/dockext-validate/nope:9.9.9" in missing.stderr


def test_validate_install_uninstall_runs_the_backend_in_a_temporary_home(home, fixture_image, docker_client):
    ref = fixture_image("vm-image", repo_prefix=PREFIX)
    # the user has this very extension installed: validating must not touch it
    run_dockext("install", "-f", ref, home=home)
    project = "dockext-validate_vm-image-desktop-extension"
    before = {c.id for c in docker_client.containers.list(filters={"label": f"com.docker.compose.project={project}"})}
    assert before
    try:
        out = run_dockext("validate", "--validate-install-uninstall", ref, home=home)
        assert "Installing the extension into a temporary dockext home, then removing it..." in out.stdout
        assert "Checked extension installs and uninstalls (in a temporary dockext home)" in out.stdout
        assert out.stdout.splitlines()[-1] == f'The extension image "{ref}" is valid (1 warning).'
        after = {c.id for c in docker_client.containers.list(
            filters={"label": f"com.docker.compose.project={project}"})}
        assert after == before
        assert [r["id"] for r in json.loads(run_dockext("ls", "--format", "json", home=home).stdout)] == [
            f"{PREFIX}/vm-image"]
        assert leftovers(docker_client) == []
    finally:
        run_dockext("rm", ref, home=home)


def test_validate_install_uninstall_reports_a_backend_that_never_answers(home, fixture_image, docker_client):
    ref = fixture_image("bad-no-socket", repo_prefix=PREFIX)
    out = run_dockext("validate", "--validate-install-uninstall", ref, home=home, check=False,
                      env={"DOCKEXT_BACKEND_TIMEOUT": "3"})
    assert out.returncode == 1
    assert "Checked extension installs and uninstalls (in a temporary dockext home): 1 error" in out.stdout
    assert "  - install: the backend did not expose its socket backend.sock within 3 s" in out.stdout
    assert "    fix: The backend must listen on /run/guest-services/backend.sock in its container." in out.stdout
    assert leftovers(docker_client) == []
    # a broken extension is not installed at all
    broken = run_dockext("validate", "--validate-install-uninstall", fixture_image("bad-json", repo_prefix=PREFIX),
                         home=home, check=False)
    assert "Skipped extension installs and uninstalls (in a temporary dockext home): the extension has errors" in (
        broken.stdout)


def test_docker_extension_validate_through_the_cli_plugin(tmp_path, fixture_image):
    env = {**os.environ, "DOCKER_CONFIG": str(tmp_path / "docker-config"), "DOCKEXT_HOME": str(tmp_path / "home"),
           "NO_COLOR": "1"}
    run_dockext("plugin", "install", home=tmp_path / "home", env=env)
    ref = fixture_image("bad-missing-root", repo_prefix=PREFIX)
    out = subprocess.run(["docker", "extension", "validate", "--errors-only", ref], capture_output=True, text=True,
                         env=env, timeout=300, check=False)
    assert out.returncode == 1, out.stderr
    assert "  - ui.dashboard-tab.root: /ui does not exist in the image" in out.stdout
    assert f'The extension image "{ref}" is not valid: 1 error.' in out.stdout
    metadata = subprocess.run(["docker", "extension", "validate", str(FIXTURES_DIR / "ui-only" / "metadata.json")],
                              capture_output=True, text=True, env=env, timeout=300, check=False)
    assert metadata.returncode == 0 and "is valid." in metadata.stdout


def test_an_unreachable_engine_is_a_clear_error(home):
    out = run_dockext("validate", "acme/ext:1.0.0", home=home, check=False,
                      env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert out.returncode == 1
    assert "Error: cannot reach the Docker engine at unix:///nonexistent/docker.sock" in out.stderr
