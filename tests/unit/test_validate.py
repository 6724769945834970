"""`dockext validate`: the pure checks (labels, metadata.json, files, versions) and what the command prints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dockext import API_VERSION
from dockext.cli import cli
from dockext.errors import MetadataError
from dockext.model import check_metadata, parse_metadata
from dockext.validate import (
    Finding,
    ImageConfig,
    PathInfo,
    Report,
    Step,
    check,
    check_api_version,
    check_labels,
    greatest_semver,
    render,
    satisfies,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "extensions"

GOOD_LABELS = {
    "org.opencontainers.image.title": "My Extension",
    "org.opencontainers.image.description": "Does things.",
    "org.opencontainers.image.vendor": "Acme, Inc.",
    "com.docker.desktop.extension.api.version": ">= 0.3.3",
    "com.docker.desktop.extension.icon": "https://example.com/icon.svg",
    "com.docker.extension.screenshots": '[{"alt": "Main", "url": "https://example.com/1.png"}]',
    "com.docker.extension.detailed-description": "<p>Details</p>",
    "com.docker.extension.publisher-url": "https://example.com",
    "com.docker.extension.changelog": "<p>First version</p>",
    "com.docker.extension.categories": "utility-tools,volumes",
}


def meta(doc: object) -> bytes:
    return json.dumps(doc).encode()


def fields(findings: list[Finding], severity: str | None = None) -> list[str]:
    return [f.field for f in findings if severity is None or f.severity == severity]


# ---------------------------------------------------------------------------------------------------------
# model.check_metadata: every problem, with parse_metadata's rules
# ---------------------------------------------------------------------------------------------------------

BROKEN_DOCS: list[object] = [
    {"ui": {"dashboard-tab": {"title": "", "root": "../x", "src": "http://evil/"}}},
    {"icon": 3, "vm": {}, "host": {"binaries": [{"linux": [{"path": "/a/../b"}, {}]}, 4]}},
    {"ui": {"dashboard-tab": {"root": "/ui"}}, "vm": {"image": "", "exposes": {"socket": "a/b.sock"}}},
    {"host": {"binaries": [{"linux": [{"path": "/a/tool"}, {"path": "/b/tool"}]}]}},
    {"host": {"binaries": {"linux": []}}},
    {"host": {"binaries": [{"linux": "nope", "darwin": [{"path": "/x"}]}]}},
    {"ui": {}},
    {},
    [],
    {"ui": "tab", "vm": [], "host": None},
    {"ui": {"dashboard-tab": {"title": "T", "root": "/ui", "src": "i.html", "backend": {"socket": ".."}}}},
    {"vm": {"composefile": "a\\b.yaml"}},
]


@pytest.mark.parametrize("doc", BROKEN_DOCS)
def test_check_metadata_includes_the_error_parse_metadata_raises(doc):
    with pytest.raises(MetadataError) as raised:
        parse_metadata(meta(doc))
    problems = check_metadata(meta(doc)).problems
    assert str(raised.value) in [str(p) for p in problems]


@pytest.mark.parametrize("fixture", sorted(p.name for p in FIXTURES.iterdir() if (p / "metadata.json").is_file()))
def test_check_metadata_agrees_with_parse_metadata_on_the_fixtures(fixture):
    data = (FIXTURES / fixture / "metadata.json").read_bytes()
    try:
        parse_metadata(data)
        ok = True
    except MetadataError:
        ok = False
    result = check_metadata(data)
    assert (not result.problems) == ok
    assert (result.metadata is not None) == ok


def test_check_metadata_lists_every_problem_with_its_field():
    doc = {
        "icon": "../icon.svg",
        "ui": {"dashboard-tab": {"root": "/ui", "src": "https://example.com/"}},
        "vm": {"exposes": {"socket": "dir/backend.sock"}},
        "host": {"binaries": [{"linux": [{"path": "/linux/../../etc/passwd"}, {"path": "/linux/ok"}],
                               "darwin": [{}]}]},
    }
    problems = check_metadata(meta(doc)).problems
    assert [p.field for p in problems] == [
        "icon",
        "ui.dashboard-tab.title",
        "ui.dashboard-tab.src",
        "vm",
        "vm.exposes.socket",
        "host.binaries[0].linux[0].path",
        "host.binaries[0].darwin[0].path",
    ]
    assert problems[1].problem == "is required"


def test_check_metadata_gives_the_paths_of_the_valid_fields():
    doc = {"icon": "icon.svg", "ui": {"dashboard-tab": {"title": "T", "root": "ui", "src": "./a/index.html"}},
           "vm": {"composefile": "compose.yaml", "exposes": {"socket": "x/y"}},
           "host": {"binaries": [{"linux": [{"path": "/linux/t"}, {"path": "../bad"}], "darwin": [{"path": "/d/t"}]}]}}
    result = check_metadata(meta(doc))
    assert [p.field for p in result.problems] == ["vm.exposes.socket", "host.binaries[0].linux[1].path"]
    assert [(p.field, p.path, p.kind) for p in result.paths] == [
        ("icon", "/icon.svg", "file"),
        ("ui.dashboard-tab.root", "/ui", "dir"),
        ("ui.dashboard-tab.src", "/ui/a/index.html", "file"),
        ("vm.composefile", "/compose.yaml", "file"),
        ("host.binaries[0].linux[0].path", "/linux/t", "file"),
        ("host.binaries[0].darwin[0].path", "/d/t", "file"),
    ]


def test_check_metadata_of_a_valid_document_is_its_parse():
    data = (FIXTURES / "host-binary" / "metadata.json").read_bytes()
    result = check_metadata(data)
    assert result.problems == () and result.metadata == parse_metadata(data)


# ---------------------------------------------------------------------------------------------------------
# Labels and versions
# ---------------------------------------------------------------------------------------------------------


def test_complete_labels_have_no_finding():
    assert check_labels(GOOD_LABELS) == []


def test_missing_labels_required_are_errors_and_marketplace_ones_warnings():
    found = check_labels({})
    assert fields(found, "error") == [
        'label "org.opencontainers.image.title"',
        'label "org.opencontainers.image.description"',
        'label "org.opencontainers.image.vendor"',
        'label "com.docker.desktop.extension.api.version"',
        'label "com.docker.desktop.extension.icon"',
    ]
    assert fields(found, "warning") == [
        'label "com.docker.extension.screenshots"',
        'label "com.docker.extension.detailed-description"',
        'label "com.docker.extension.publisher-url"',
        'label "com.docker.extension.changelog"',
        'label "com.docker.extension.categories"',
    ]
    assert all(f.hint and f.hint.startswith("Add to the Dockerfile: LABEL ") for f in found)


def test_malformed_and_legacy_labels_are_reported():
    labels = {**GOOD_LABELS,
              "com.docker.desktop.extension.icon": "javascript:alert(1)",
              "com.docker.extension.screenshots": '{"url": "https://x"}',
              "com.docker.extension.additional-urls": '[{"title": "Docs", "url": "file:///etc/passwd"}]',
              "com.docker.extension.publisher-url": "example.com",
              "com.docker.extension.categories": "volumes,toys",
              "com.docker.extension.account-info": "maybe",
              "org.opencontainers.image.authors": "Someone"}
    found = {f.field: f for f in check_labels(labels)}
    assert found['label "com.docker.desktop.extension.icon"'].severity == "error"
    assert "not an http(s) URL" in found['label "com.docker.desktop.extension.icon"'].message
    assert found['label "com.docker.extension.screenshots"'].message == "is not a JSON array"
    assert "entries 0 have no http(s)" in found['label "com.docker.extension.additional-urls"'].message
    assert "not an http(s) URL" in found['label "com.docker.extension.publisher-url"'].message
    assert found['label "com.docker.extension.categories"'].message == 'unknown categories: "toys"'
    assert "legacy name" in found['label "org.opencontainers.image.authors"'].message
    assert found['label "com.docker.extension.account-info"'].severity == "warning"


def test_a_legacy_label_stands_in_for_a_required_one():
    labels = {k: v for k, v in GOOD_LABELS.items() if k != "com.docker.desktop.extension.api.version"}
    labels["com.docker.desktop.plugin.api.version"] = ">= 0.2.0"
    assert [(f.severity, f.field) for f in check_labels(labels)] == [
        ("warning", 'label "com.docker.desktop.plugin.api.version"')
    ]


@pytest.mark.parametrize(
    ("constraint", "version", "strict", "expected"),
    [
        (">= 0.3.3", "0.4.2", True, True),
        (">=0.4.2", "0.4.2", True, True),
        (">= 0.5.0", "0.4.2", False, False),
        ("0.3.3", "0.4.2", False, True),  # a bare version is a floor when lenient
        ("0.3.3", "0.4.2", True, False),  # and exact when strict (Docker Desktop's --sdk-compatibility)
        ("0.4.2", "0.4.2", True, True),
        ("v0.4.2", "0.4.2", True, True),
        (">= 1.4.7, < 2.0", "1.9.0", True, True),
        (">= 1.4.7, < 2.0", "2.0.0", True, False),
        (">= 1.4.7 < 2.0", "1.5.0", True, True),
        ("^0.4", "0.4.2", True, True),
        ("^0.3.3", "0.4.2", True, False),
        ("~0.4.1", "0.4.2", True, True),
        ("~0.3", "0.4.2", True, False),
        ("0.4.x", "0.4.2", True, True),
        ("0.4", "0.4.2", True, True),
        ("0.3.0 - 0.4.2", "0.4.2", True, True),
        ("< 0.4.0 || >= 0.4.2", "0.4.2", True, True),
        ("!= 0.4.2", "0.4.2", True, False),
        ("> 0.4", "0.4.2", True, False),
        ("*", "0.4.2", True, True),
        ("latest", "0.4.2", False, None),
        (">= 0.3.3,", "0.4.2", False, True),
        (">= 0.3.3 foo", "0.4.2", False, None),
        ("", "0.4.2", False, None),
        ("0.3.3.1", "0.4.2", False, None),
    ],
)
def test_api_version_constraints(constraint, version, strict, expected):
    assert satisfies(constraint, version, strict=strict) is expected


def test_api_version_mismatch_is_a_warning_unless_strict():
    labels = {"com.docker.desktop.extension.api.version": "0.3.0"}
    assert check_api_version(labels, strict=False) == []
    [strict] = check_api_version(labels, strict=True)
    assert strict.severity == "error"
    assert strict.message == f'("0.3.0") is incompatible with the current API version "{API_VERSION}"'
    assert strict.hint == 'Consider changing it to ">= 0.3.0"'
    [newer] = check_api_version({"com.docker.desktop.extension.api.version": ">= 9.0.0"}, strict=False)
    assert newer.severity == "warning" and "installs it anyway" in newer.message
    [bad] = check_api_version({"com.docker.desktop.extension.api.version": "soon"}, strict=False)
    assert bad.severity == "error" and "is not a version or a version constraint" in bad.message


def test_greatest_semver_is_by_precedence_not_by_text():
    assert greatest_semver(["1.2.0", "1.10.0", "latest", "1.9.9", "2.0.0-rc.1", "v1.10.0-beta"]) == "2.0.0-rc.1"
    assert greatest_semver(["1.0.0-rc.2", "1.0.0", "1.0.0-rc.10"]) == "1.0.0"
    assert greatest_semver(["1.0.0-rc.2", "1.0.0-rc.10"]) == "1.0.0-rc.10"
    assert greatest_semver(["latest", "dev"]) is None


# ---------------------------------------------------------------------------------------------------------
# Files named by metadata.json (a fake image)
# ---------------------------------------------------------------------------------------------------------


def fake_image(entries: dict[str, PathInfo], files: dict[str, bytes] | None = None):
    return entries.get, (files or {}).get


UI_ENTRIES = {"/icon.svg": PathInfo("file"), "/ui": PathInfo("dir"), "/ui/index.html": PathInfo("file")}
UI_DOC = {"icon": "icon.svg", "ui": {"dashboard-tab": {"title": "T", "root": "/ui", "src": "index.html"}}}


def run(doc: object, entries: dict[str, PathInfo], files=None, *, labels=None, config=None, tag="1.0.0") -> Report:
    stat, read = fake_image(entries, files)
    return check(GOOD_LABELS if labels is None else labels, meta(doc), stat, read=read, config=config, tag=tag,
                 target="acme/ext:1.0.0")


def test_a_complete_extension_is_valid():
    report = run(UI_DOC, UI_ENTRIES)
    assert report.valid and report.findings == []
    assert render(report) == [
        "Checked image labels",
        "Checked metadata.json",
        "Checked the files metadata.json names",
        "Checked image tag is semver",
        f"Checked extension is compatible with API version {API_VERSION}",
        "",
        'The extension image "acme/ext:1.0.0" is valid.',
    ]


def test_missing_and_wrong_kinds_of_files_are_errors_naming_the_field():
    doc = {**UI_DOC, "host": {"binaries": [{"linux": [{"path": "/linux/tool"}, {"path": "/linux/gone"},
                                                      {"path": "/linux/lib"}, {"path": "/linux/plain"}]}]}}
    entries = {"/icon.svg": PathInfo("symlink", target="/etc/passwd"), "/ui": PathInfo("file"),
               "/linux/tool": PathInfo("file", 0o755), "/linux/lib": PathInfo("dir"),
               "/linux/plain": PathInfo("file", 0o644)}
    report = run(doc, entries)
    errors = {f.field: f.message for f in report.errors}
    assert errors == {
        "icon": '/icon.svg is a symbolic link (to "/etc/passwd"), not a file',
        "ui.dashboard-tab.root": "/ui is a file, not a directory",
        "host.binaries[0].linux[1].path": "/linux/gone does not exist in the image",
        "host.binaries[0].linux[2].path": "/linux/lib is a directory, not a file",
    }
    assert [(f.field, f.message) for f in report.warnings] == [
        ("host.binaries[0].linux[3].path", "/linux/plain is not executable: running it will fail")
    ]


def test_the_entry_page_is_looked_for_in_the_ui_root():
    report = run(UI_DOC, {"/icon.svg": PathInfo("file"), "/ui": PathInfo("dir")})
    assert [(f.field, f.message) for f in report.errors] == [
        ("ui.dashboard-tab.src", "/ui/index.html does not exist in the UI root")
    ]
    inside = run(UI_DOC, {**UI_ENTRIES, "/ui/index.html": PathInfo("symlink", target="app/index.html")})
    assert inside.valid
    outside = run(UI_DOC, {**UI_ENTRIES, "/ui/index.html": PathInfo("symlink", target="../etc/passwd")})
    assert "which leaves the UI root /ui" in outside.errors[0].message


def test_compose_file_is_parsed_and_the_backend_needs_a_command():
    doc = {**UI_DOC, "vm": {"composefile": "docker-compose.yaml"}}
    entries = {**UI_ENTRIES, "/docker-compose.yaml": PathInfo("file")}
    compose = (b"services:\n  api:\n    image: ${DESKTOP_PLUGIN_IMAGE}\n  dockext-sockperm:\n    image: x\n  b: {}\n"
               b"  dockext-relay: {image: x}\nvolumes:\n  dockext-guest-services: {}\n")
    report = run(doc, entries, {"/docker-compose.yaml": compose}, config=ImageConfig(has_command=False))
    assert [f.message for f in report.errors] == [
        "service name 'dockext-sockperm' is reserved by dockext",
        "service name 'dockext-relay' is reserved by dockext",
        "volume name 'dockext-guest-services' is reserved by dockext",
        "service 'api' runs the extension image, which has no CMD or ENTRYPOINT",
        "service 'b' has no image (extensions cannot build)",
    ]
    broken = run(doc, entries, {"/docker-compose.yaml": b"services: [\n"})
    assert broken.errors[0].field == "vm.composefile" and "not valid YAML" in broken.errors[0].message
    image_backend = run({**UI_DOC, "vm": {"image": "${DESKTOP_PLUGIN_IMAGE}"}}, UI_ENTRIES,
                        config=ImageConfig(has_command=False))
    assert [(f.field, f.message) for f in image_backend.errors] == [
        ("vm.image", "the backend is the extension image, which has no CMD or ENTRYPOINT")
    ]



def test_compose_file_is_read_by_compose_after_dockexts_checks_and_under_the_extensions_own_project():
    doc = {**UI_DOC, "vm": {"composefile": "docker-compose.yaml"}}
    entries = {**UI_ENTRIES, "/docker-compose.yaml": PathInfo("file")}
    project = "acme_ext-desktop-extension"
    compose = (f"services:\n  api:\n    image: x\n    container_name: {project}-api\n"
               f"    volumes: [{project}_data:/data]\n").encode()
    seen: list[dict] = []

    def refused(doc: dict) -> None:
        seen.append(doc)
        raise MetadataError("vm.composefile", "Docker Compose cannot use it: services.api additional properties "
                                              "'x' not allowed")

    def check_with(compose_check, project: str = project) -> Report:
        stat, read = fake_image(entries, {"/docker-compose.yaml": compose})
        return check(GOOD_LABELS, meta(doc), stat, read=read, tag="1.0.0", target="acme/ext:1.0.0",
                     project=project, compose_check=compose_check)

    report = check_with(refused)
    assert [(f.field, f.message) for f in report.errors] == [
        ("vm.composefile", "Docker Compose cannot use it: services.api additional properties 'x' not allowed")]
    assert "docker compose config" in report.errors[0].hint
    assert seen == [{"services": {"api": {"image": "x", "container_name": f"{project}-api",
                                          "volumes": [f"{project}_data:/data"]}}}]  # the parsed file
    assert check_with(lambda doc: None).valid  # accepted by Compose: the own project's names are the extension's
    # under another project, the same names are another extension's: refused before Compose is asked
    seen.clear()
    other = check_with(refused, project="other_ext-desktop-extension")
    assert not other.valid and seen == []
    assert all("Docker Compose" not in f.message for f in other.errors)


def test_a_windows_image_and_a_non_semver_tag():
    report = run(UI_DOC, UI_ENTRIES, config=ImageConfig(os="windows", architecture="amd64"), tag="latest")
    assert [(f.severity, f.field) for f in report.findings] == [("warning", "tag"), ("error", "image")]
    assert "Checked image platform (windows/amd64): 1 error" in render(report)


def test_metadata_warnings_for_obsolete_unknown_and_ineffective_fields():
    doc = {"name": "old", "Icon": "x.svg",
           "ui": {"dashboard-tab": {"title": "T", "root": "/ui", "src": "index.html", "backend": {"socket": "a.sock"}}},
           "vm": {"image": "${DESKTOP_PLUGIN_IMAGE}", "composefile": "c.yaml", "isolation": "dockerd"},
           "host": {"binaries": [{"darwin": [{"path": "/d/t"}], "mac": []}]}}
    entries = {**UI_ENTRIES, "/d/t": PathInfo("file", 0o755)}
    report = run(doc, entries)
    assert report.valid
    assert {(f.field, f.message) for f in report.warnings} == {
        ("name", "is obsolete and ignored"),
        ("Icon", "is not a metadata.json field: ignored"),
        ("vm.isolation", "is obsolete and ignored"),
        ("host.binaries[0].mac", "is not an OS: ignored"),
        ("host.binaries", "has no linux entry: nothing is copied on Linux"),
        ("vm", 'declares both "image" and "composefile": "image" is used'),
        ("ui.dashboard-tab.backend.socket", "is the legacy place of the socket name"),
        ("icon", "is missing: the dashboard shows a generic icon"),
    }


def test_every_problem_is_reported_at_once():
    doc = {"icon": "missing.svg", "ui": {"dashboard-tab": {"title": "T", "root": "/nowhere", "src": "index.html"}},
           "host": {"binaries": [{"linux": [{"path": "/linux/../x"}]}]}}
    labels = {k: v for k, v in GOOD_LABELS.items() if "vendor" not in k and "changelog" not in k}
    report = run(doc, {}, labels=labels)
    assert fields(report.errors) == [
        'label "org.opencontainers.image.vendor"',
        "host.binaries[0].linux[0].path",
        "icon",
        "ui.dashboard-tab.root",
    ]
    assert fields(report.warnings) == ['label "com.docker.extension.changelog"']
    assert all(f.hint for f in report.findings)
    lines = render(report)
    assert "Checked image labels: 1 error, 1 warning" in lines
    assert "Errors (4):" in lines and "Warnings (1):" in lines
    assert '  - host.binaries[0].linux[0].path: "/linux/../x": ".." is not allowed' in lines
    assert lines[-2] == 'The extension image "acme/ext:1.0.0" is not valid: 4 errors.'
    quiet = render(report, errors_only=True)
    assert "Warnings (1):" not in quiet and "Checked image labels: 1 error" in quiet
    assert not any("changelog" in line for line in quiet)


def test_render_of_a_skipped_step():
    report = Report("acme/ext:1.0.0", "image", [Step("metadata.json", (Finding("error", "metadata.json", "bad"),)),
                                                Step("extension installs and uninstalls", skipped="it has errors")])
    assert "Skipped extension installs and uninstalls: it has errors" in render(report)


# ---------------------------------------------------------------------------------------------------------
# The command, on a metadata.json file (no engine)
# ---------------------------------------------------------------------------------------------------------


def test_validate_a_metadata_file(tmp_path):
    good = tmp_path / "metadata.json"
    good.write_text(json.dumps(UI_DOC))
    result = CliRunner().invoke(cli, ["validate", str(good)])
    assert result.exit_code == 0, result.output
    assert f'The metadata file "{good}" is valid.' in result.output
    assert "validate the image to check its labels and files" in result.output
    assert CliRunner().invoke(cli, ["validate", str(tmp_path)]).exit_code == 0  # a folder holding metadata.json

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"ui": {"dashboard-tab": {"root": "/ui"}}, "vm": {}}))
    result = CliRunner().invoke(cli, ["validate", str(bad)])
    assert result.exit_code == 1
    assert "  - ui.dashboard-tab.title: is required" in result.output
    assert "  - ui.dashboard-tab.src: is required" in result.output
    assert '  - vm: must declare "image" or "composefile"' in result.output
    assert f'The metadata file "{bad}" is not valid: 3 errors.' in result.output


def test_validate_a_missing_file_and_image_only_flags(tmp_path):
    missing = CliRunner().invoke(cli, ["validate", str(tmp_path / "nope.json")])
    assert missing.exit_code == 1 and "cannot read" in missing.output
    (tmp_path / "metadata.json").write_text("{}")
    flag = CliRunner().invoke(cli, ["validate", "--validate-install-uninstall", str(tmp_path / "metadata.json")])
    assert flag.exit_code == 2 and "needs an extension image" in flag.output
