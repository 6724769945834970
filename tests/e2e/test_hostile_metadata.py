"""What an image says about itself is shown as text, never run (reference security-reliability.md S20/S21).

An extension image whose title, tab title, vendor and description carry markup that would run if the dashboard
ever put it in the page as HTML (``<img onerror>``, ``<script>``, ``<svg onload>``) and whose publisher URL is
``javascript:``. The dashboard shows those strings literally wherever it shows them (home table, sidebar tab,
the image's view), no script of theirs runs, and the page never requests what they point to.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest
from playwright.sync_api import Page, expect

from tests.support import images
from tests.support.cli import run_dockext
from tests.support.images import TEST_LABEL
from tests.support.server import start_server

pytestmark = [pytest.mark.engine, pytest.mark.browser]

IMG = '<img src="/pwned-img" onerror="window.__pwned=1">'
SCRIPT = "<script>window.__pwned=2</script>"
SVG = '<svg onload="window.__pwned=3"></svg>'
REF = "dockext-test-hostile/evil:1.0.0"
TITLE = f"Evil {IMG}"
TAB = f"Tab {SVG}"
VENDOR = f"Vendor {SCRIPT} [/] [bold]rich markup[/bold] [link=http://127.0.0.1/x]"  # markup of the CLI's console


@pytest.fixture(scope="module")
def home(tmp_path_factory, fixture_image, docker_client: docker.DockerClient) -> Iterator[Path]:
    """The ui-only fixture re-labelled with markup, installed in a home of its own."""
    context = tmp_path_factory.mktemp("hostile-image")
    (context / "Dockerfile").write_text(f"FROM {fixture_image('ui-only')}\nCOPY metadata.json /\n")
    (context / "metadata.json").write_text(json.dumps(
        {"icon": "icon.svg", "ui": {"dashboard-tab": {"title": TAB, "root": "/ui", "src": "index.html"}}}
    ))
    docker_client.images.build(path=str(context), tag=REF, rm=True, labels={
        TEST_LABEL: "1",
        "org.opencontainers.image.title": TITLE,
        "org.opencontainers.image.vendor": VENDOR,
        "org.opencontainers.image.description": IMG,
        "com.docker.extension.detailed-description": SCRIPT,
        "com.docker.extension.publisher-url": "javascript:window.__pwned=4",
    })
    path = tmp_path_factory.mktemp("hostile") / "home"
    try:
        run_dockext("install", "-f", REF, home=path)
        yield path
    finally:
        run_dockext("rm", REF, home=path, check=False)
        with contextlib.suppress(docker.errors.APIError):
            docker_client.images.remove(REF, noprune=True)


def test_markup_in_metadata_is_shown_as_text_and_never_runs(page: Page, home: Path) -> None:
    server = start_server(home)
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    try:
        page.goto(server.login_url)
        expect(page.locator("#home-title")).to_be_visible()
        row = page.locator("tbody tr").filter(has_text="Evil")
        expect(row).to_contain_text(TITLE)  # the characters themselves, not an image
        expect(row).to_contain_text(VENDOR)
        expect(row).to_contain_text(TAB)
        tab = page.get_by_role("tab", name=TITLE, exact=True)  # the sidebar names the extension by its title
        expect(tab).to_be_visible()
        assert page.locator("img[src='/pwned-img'], script:text('__pwned'), svg[onload]").count() == 0

        tab.click()  # the extension's own tab
        expect(page.locator("#extension-frame")).to_be_visible()
        page.get_by_role("button", name="Images", exact=True).click()
        page.get_by_role("button", name=REF.rsplit(":", 1)[0], exact=True).click()
        expect(page.locator("#view-images")).to_contain_text(SCRIPT)  # its labels, as inspect text

        assert page.evaluate("window.__pwned") is None
        assert not [u for u in requested if "pwned" in u], requested
    finally:
        server.stop()


def test_markup_in_labels_and_arguments_is_printed_as_it_is_by_the_cli(home: Path) -> None:
    table = run_dockext("ls", home=home).stdout
    assert VENDOR in table, table  # rich would have read [/] and [bold] as its own markup (and [/] crashed it)
    wrong = run_dockext("rm", "[/]", home=home, check=False)
    assert wrong.returncode == 1 and "Traceback" not in wrong.stderr, wrong.stderr
    assert wrong.stderr.startswith("Error: ") and "[/]" in wrong.stderr


def test_markup_in_a_registrys_labels_is_text_in_the_marketplace_too(
    page: Page, home: Path, tmp_path, docker_client: docker.DockerClient
) -> None:
    """The Marketplace reads labels straight from a registry, before anything is installed (Docker Desktop's
    CVE-2023-0625 came through the detailed description and changelog labels)."""
    ns = f"dockext-hostile-{secrets.token_hex(3)}"
    remote = images.push_fixture(docker_client, _retag(docker_client, REF, f"{ns}/evil:1.0.0"))
    mk_home = tmp_path / "mk-home"
    server = start_server(mk_home)
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    try:
        run_dockext("marketplace", "add", f"{remote.split('/')[0]}/{ns}", home=mk_home)
        page.goto(server.login_url)
        page.locator("#marketplace-button").click()
        card = page.locator(".mk-card").filter(has_text="Evil")
        expect(card.locator(".mk-title")).to_have_text(TITLE)  # the characters themselves
        expect(card.locator(".mk-vendor")).to_have_text(VENDOR)
        card.locator(".mk-details summary").click()
        # the detailed description was nothing but a <script>: as text (tags and scripts dropped), nothing is left
        expect(card.locator(".mk-details")).to_contain_text(f"{remote.rsplit(':', 1)[0]}:1.0.0")
        expect(card.locator(".mk-text")).to_have_text(["First version."])  # only the changelog it inherited
        expect(card.locator(".mk-links a")).to_have_count(0)  # the javascript: publisher URL is no link
        assert page.locator("img[src='/pwned-img'], svg[onload]").count() == 0
        assert page.evaluate("window.__pwned") is None
        assert not [u for u in requested if "pwned" in u], requested
    finally:
        server.stop()
        with contextlib.suppress(docker.errors.APIError):
            docker_client.images.remove(f"{ns}/evil:1.0.0", noprune=True)


def _retag(client: docker.DockerClient, ref: str, new: str) -> str:
    repository, _, tag = new.rpartition(":")
    client.images.get(ref).tag(repository, tag)
    return new
