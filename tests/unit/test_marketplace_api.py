"""Pieces of the dashboard's Marketplace API that need no registry: label HTML as text, the update offer."""

from __future__ import annotations

import pytest

from dockext.marketplace import Entry
from dockext.server.marketplace_api import _entry_json, html_to_text
from dockext.store import Record


def test_label_html_becomes_plain_text_with_its_blocks_on_lines():
    html = (
        "<h2>New</h2><p>Faster &amp; <b>safer</b>.</p><ul><li>one</li><li>two</li></ul>"
        "<script>alert(1)</script><style>p{}</style><img src=x onerror=alert(2)>end"
    )
    assert html_to_text(html) == "New\nFaster & safer.\n• one\n• two\nend"
    assert html_to_text("") == ""
    assert len(html_to_text("<p>" + "x" * 100_000)) == 20_000


def entry(tag: str) -> Entry:
    labels = {
        "com.docker.extension.detailed-description": "<p>Long <i>text</i></p>",
        "com.docker.extension.screenshots": '[{"alt": "a", "url": "https://x.test/1.png"}, {"url": "javascript:1"}]',
        "com.docker.extension.publisher-url": "javascript:alert(1)",
        "com.docker.extension.categories": "testing-tools, utility-tools",
    }
    return Entry(image="127.0.0.1:5000/acme/x", tag=tag, tags=(tag,), labels=labels, title="X", vendor="Acme",
                 description="d", source="127.0.0.1:5000/acme")


def record(version: str) -> Record:
    return Record(key="k", id="127.0.0.1:5000/acme/x", image=f"127.0.0.1:5000/acme/x:{version}", image_id="sha256:1",
                  version=version, title="X", provider="Acme", origin_slug="x-1", installed_at=0.0)


@pytest.mark.parametrize(("offered", "installed", "update"), [
    ("2.0.0", "1.0.0", True), ("1.0.0", "1.0.0", False), ("1.0.0", "2.0.0", False),
    ("1.10.0", "1.9.0", True), ("latest", "1.0.0", True), ("latest", "latest", False),
])
def test_an_update_is_offered_only_for_a_greater_version(offered, installed, update):
    assert _entry_json(entry(offered), record(installed))["update"] is update


def test_links_are_http_only_and_text_is_text():
    got = _entry_json(entry("1.0.0"), None)
    assert got["installed"] is None and got["update"] is False
    assert got["screenshots"] == [{"url": "https://x.test/1.png", "alt": "a"}]
    assert got["publisherUrl"] is None
    assert got["detailedDescription"] == "Long text"
    assert got["categories"] == ["testing-tools", "utility-tools"]
