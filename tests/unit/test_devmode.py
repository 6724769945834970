"""Developer-mode settings (`dockext dev`): the URL rules and the file they live in."""

from __future__ import annotations

import json
import stat

import pytest

from dockext import devmode
from dockext.devmode import DevSettings
from dockext.errors import DockextError, StateError
from dockext.paths import Layout


@pytest.fixture
def layout(tmp_path) -> Layout:
    lay = Layout(tmp_path / "home")
    lay.ensure()
    return lay


@pytest.mark.parametrize(("given", "kept"), [
    ("http://localhost:3000", "http://localhost:3000"),
    ("http://127.0.0.1:5173/", "http://127.0.0.1:5173"),
    (" https://dev.example.test/app/ ", "https://dev.example.test/app"),
])
def test_dev_server_urls_are_kept_without_a_trailing_slash(given, kept):
    assert devmode.check_url(given) == kept


@pytest.mark.parametrize(("given", "says"), [
    ("file:///etc/passwd", "is not an http(s) URL"),
    ("localhost:3000", "is not an http(s) URL"),
    ("http://", "is not an http(s) URL"),
    ("javascript:alert(1)", "is not an http(s) URL"),
    ("http://me:secret@localhost:3000", "user name or password"),
    ("http://localhost:3000/?x=1", "without ? or #"),
    # found in a review: an empty query or fragment was kept (every path then fetched as /), ports only failed later
    ("http://127.0.0.1:5173#", "without ? or #"),
    ("http://127.0.0.1:5173?", "without ? or #"),
    ("http://127.0.0.1:abc", "Port could not be cast"),
    ("http://127.0.0.1:99999", "Port out of range"),
])
def test_other_urls_are_refused_with_the_reason(given, says):
    with pytest.raises(DockextError, match=says.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        devmode.check_url(given)


def test_settings_round_trip_per_extension_and_reset_removes_them(layout):
    assert devmode.load(layout) == {}
    devmode.set_ui_source(layout, "acme_a", "http://localhost:3000/")
    devmode.set_debug(layout, "acme_a")
    devmode.set_debug(layout, "acme_b")
    assert devmode.load(layout) == {
        "acme_a": DevSettings(ui_source="http://localhost:3000", debug=True),
        "acme_b": DevSettings(debug=True),
    }
    path = layout.root / devmode.FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["schema"] == devmode.SCHEMA
    devmode.reset(layout, "acme_a")
    assert devmode.load(layout) == {"acme_b": DevSettings(debug=True)}
    devmode.reset(layout, "acme_b")
    assert json.loads(path.read_text())["extensions"] == {}


def test_a_file_from_a_newer_dockext_or_a_broken_one_is_a_clear_error(layout):
    path = layout.root / devmode.FILE
    path.write_text(json.dumps({"schema": devmode.SCHEMA + 1, "extensions": {}}))
    with pytest.raises(StateError, match="upgrade dockext"):
        devmode.load(layout)
    path.write_text("{not json")
    with pytest.raises(StateError, match="unreadable"):
        devmode.load(layout)
    path.write_text(json.dumps({"schema": devmode.SCHEMA, "extensions": ["acme_x"]}))
    with pytest.raises(StateError, match="'extensions' is not a JSON object"):
        devmode.load(layout)
