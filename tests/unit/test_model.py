"""Image references, extension identity, metadata.json and labels."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from dockext.errors import InvalidImageReference, MetadataError
from dockext.model import (
    DashboardTab,
    HostBinary,
    ImageRef,
    Metadata,
    VmSpec,
    compose_project,
    extension_key,
    origin_slug,
    parse_labels,
    parse_metadata,
)

DIGEST = "sha256:" + "a" * 64

# ---------------------------------------------------------------------------------------------------------
# ImageRef
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("127.0.0.1:5000/acme/my-ext:1.0", "127.0.0.1:5000", "acme/my-ext", "1.0", None),
        ("docker/volumes-backup-extension", None, "docker/volumes-backup-extension", None, None),
        ("docker/volumes-backup-extension:1.1.4", None, "docker/volumes-backup-extension", "1.1.4", None),
        ("x", None, "x", None, None),
        ("x:latest", None, "x", "latest", None),
        ("ghcr.io/acme/ext", "ghcr.io", "acme/ext", None, None),
        ("localhost/ext", "localhost", "ext", None, None),
        ("localhost:5000/a/b/c:v_1.0-rc", "localhost:5000", "a/b/c", "v_1.0-rc", None),
        ("[::1]:5000/acme/x:2", "[::1]:5000", "acme/x", "2", None),
        (f"acme/x@{DIGEST}", None, "acme/x", None, DIGEST),
        (f"reg.io/acme/x:1@{DIGEST}", "reg.io", "acme/x", "1", DIGEST),
        ("docker.io/acme/x", None, "acme/x", None, None),  # Docker Hub spelled out = the short name
        ("index.docker.io/library/alpine", None, "alpine", None, None),
        ("a__b/c.d-e--f", None, "a__b/c.d-e--f", None, None),
        ("Registry/acme", "Registry", "acme", None, None),
    ],
)
def test_parse(text: str, registry: str | None, repository: str, tag: str | None, digest: str | None) -> None:
    assert ImageRef.parse(text) == ImageRef(registry, repository, tag, digest)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        (" acme/x", "whitespace"),
        ("acme/x y", "whitespace"),
        ("acme/x\t", "whitespace"),
        ("Acme", "lower case"),
        ("acme/MyExt", "lower case"),
        ("acme/x:", "tag"),
        ("acme/x:-bad", "tag"),
        ("acme/x:.bad", "tag"),
        ("acme/x:" + "a" * 129, "tag"),
        ("acme/x:a/b", "lower case|not valid|empty"),
        ("acme//x", "empty path component"),
        ("acme/x/", "empty path component"),
        ("/acme/x", "empty path component"),
        ("acme/-x", "not valid"),
        ("acme/x_", "not valid"),
        ("acme/x@sha256:abc", "digest"),
        ("acme/x@sha256:" + "A" * 64, "lower-case hex"),
        ("acme/x@md5", "digest"),
        ("acme/x@" + DIGEST + "@" + DIGEST, 'more than one "@"'),
        ("@" + DIGEST, "repository name is empty"),
        (":tag", "repository name is empty"),
        ("bad_host.io/x", "registry"),
        ("-host.io/x", "registry"),
        ("host.io:port/x", "registry"),
        ("host.io/", "repository name is empty"),
        ("a" * 256, "longer than 255"),
        ("acme/x\x00", "control"),
        ("acme/é", "not valid"),
    ],
)
def test_parse_refuses(text: str, problem: str) -> None:
    with pytest.raises(InvalidImageReference) as err:
        ImageRef.parse(text)
    assert re.search(problem, str(err.value)), str(err.value)
    assert err.value.hint


@pytest.mark.parametrize("text", [DIGEST, DIGEST.removeprefix("sha256:"), "sha256:" + "0123456789ABCDEF" * 4])
def test_parse_refuses_an_image_id(text: str) -> None:
    """``sha256:<hex>`` would otherwise be the image "sha256" tagged with the ID: an extension called sha256."""
    with pytest.raises(InvalidImageReference) as err:
        ImageRef.parse(text)
    assert err.value.message == f'"{text}" is an image ID, not an image name'
    assert "installed by name" in (err.value.hint or "")
    # a name is still a name, whatever its tag looks like
    assert ImageRef.parse(f"acme/x:{DIGEST.removeprefix('sha256:')}").tag == DIGEST.removeprefix("sha256:")
    assert ImageRef.parse(f"acme/x@{DIGEST}").digest == DIGEST
    assert ImageRef.parse("sha256:1.0") == ImageRef(None, "sha256", "1.0", None)


def test_parse_refuses_non_string() -> None:
    with pytest.raises(InvalidImageReference):
        ImageRef.parse(None)  # type: ignore[arg-type]


def test_name_pull_ref_version() -> None:
    ref = ImageRef.parse("127.0.0.1:5000/acme/my-ext")
    assert ref.name == "127.0.0.1:5000/acme/my-ext"
    assert ref.pull_ref == "127.0.0.1:5000/acme/my-ext:latest"
    assert ref.version == "latest"

    ref = ImageRef.parse("acme/x:1.2")
    assert (ref.name, ref.pull_ref, ref.version) == ("acme/x", "acme/x:1.2", "1.2")

    ref = ImageRef.parse(f"acme/x@{DIGEST}")
    assert (ref.name, ref.pull_ref, ref.version) == ("acme/x", f"acme/x@{DIGEST}", DIGEST)

    ref = ImageRef.parse(f"acme/x:1@{DIGEST}")
    assert (ref.pull_ref, ref.version) == (f"acme/x:1@{DIGEST}", "1")


def test_parse_round_trips() -> None:
    for text in ["acme/x:1", "reg.io:443/a/b@" + DIGEST, "x:latest"]:
        assert ImageRef.parse(text).pull_ref == text
        assert ImageRef.parse(ImageRef.parse(text).pull_ref) == ImageRef.parse(text)


# ---------------------------------------------------------------------------------------------------------
# keys, projects, origins
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("docker/volumes-backup-extension", "docker_volumes-backup-extension"),
        ("docker/volumes-backup-extension:1.0", "docker_volumes-backup-extension"),
        ("127.0.0.1:5000/acme/x", "127_0_0_1_5000_acme_x"),
        ("127.0.0.1:5000/acme/x:2@" + DIGEST, "127_0_0_1_5000_acme_x"),
        ("Registry.IO/acme/x", "registry_io_acme_x"),
        ("[::1]:5000/acme/x", "1__5000_acme_x"),
        ("x", "x"),
    ],
)
def test_extension_key(text: str, key: str) -> None:
    result = extension_key(ImageRef.parse(text))
    assert result == key
    assert re.fullmatch(r"[a-z0-9][a-z0-9_-]*", result)


def test_compose_project() -> None:
    assert (
        compose_project("docker_volumes-backup-extension")
        == "docker_volumes-backup-extension-desktop-extension"
    )


@pytest.mark.parametrize(
    "key",
    [
        "docker_volumes-backup-extension",
        "127_0_0_1_5000_acme_x",
        "x",
        "a" * 200,
        "a_" * 100,
        "xn--abc",
        "a__b--c",
        "_-_",
    ],
)
def test_origin_slug_is_a_dns_label(key: str) -> None:
    slug = origin_slug(key, "0a1b2c")
    assert len(slug) <= 63
    assert re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", slug), slug
    assert "--" not in slug
    assert slug.endswith("-0a1b2c")


def test_origin_slug_examples() -> None:
    assert (
        origin_slug("docker_volumes-backup-extension", "abcdef") == "docker-volumes-backup-extension-abcdef"
    )
    assert origin_slug("127_0_0_1_5000_acme_x", "000001") == "127-0-0-1-5000-acme-x-000001"
    long = origin_slug("a" * 100, "abcdef")
    assert long == "a" * 56 + "-abcdef"


@pytest.mark.parametrize("suffix", ["", "ABCDEF", "ab-cd", "a" * 33])
def test_origin_slug_refuses_bad_suffix(suffix: str) -> None:
    with pytest.raises(ValueError):
        origin_slug("x", suffix)


# ---------------------------------------------------------------------------------------------------------
# metadata.json: official samples
# ---------------------------------------------------------------------------------------------------------


def meta(doc: Any) -> Metadata:
    return parse_metadata(json.dumps(doc).encode())


def test_minimal_frontend() -> None:
    m = meta(
        {"ui": {"dashboard-tab": {"title": "Min FrontEnd Extension", "root": "/ui", "src": "index.html"}}}
    )
    assert m.tab == DashboardTab("Min FrontEnd Extension", "/ui", "index.html", None)
    assert m.vm is None and m.icon is None and m.host_binaries == {} and m.socket is None
    assert m.binaries_for("linux") == ()


def test_minimal_backend() -> None:
    m = meta(
        {
            "vm": {"image": "${DESKTOP_PLUGIN_IMAGE}"},
            "ui": {"dashboard-tab": {"title": "Hello Backend Extension", "root": "/ui", "src": "index.html"}},
        }
    )
    assert m.vm == VmSpec("${DESKTOP_PLUGIN_IMAGE}", None, None)


def test_vm_service_sample() -> None:
    m = meta(
        {
            "icon": "docker.svg",
            "vm": {"composefile": "docker-compose.yaml", "exposes": {"socket": "extension-volumes.sock"}},
            "ui": {
                "dashboard-tab": {
                    "title": "Volumes",
                    "root": "/ui",
                    "src": "index.html",
                    "backend": {"socket": "extension-volumes.sock"},
                }
            },
        }
    )
    assert m.icon == "/docker.svg"
    assert m.vm == VmSpec(None, "/docker-compose.yaml", "extension-volumes.sock")
    assert m.tab is not None and m.tab.backend_socket == "extension-volumes.sock"
    assert m.socket == "extension-volumes.sock"


def test_kubernetes_sample_host_binaries() -> None:
    m = meta(
        {
            "icon": "docker.svg",
            "ui": {"dashboard-tab": {"title": "Kubernetes Sample", "src": "index.html", "root": "ui"}},
            "host": {
                "binaries": [
                    {
                        "darwin": [{"path": "/darwin/kubectl"}],
                        "windows": [{"path": "/windows/kubectl.exe"}],
                        "linux": [{"path": "/linux/kubectl"}],
                    }
                ]
            },
        }
    )
    assert m.tab is not None and m.tab.root == "/ui"
    assert m.binaries_for() == (HostBinary("/linux/kubectl", "kubectl"),)
    assert m.binaries_for("windows") == (HostBinary("/windows/kubectl.exe", "kubectl.exe"),)
    assert m.binaries_for("darwin") == (HostBinary("/darwin/kubectl", "kubectl"),)
    assert m.binaries_for("plan9") == ()


def test_host_only_extension_and_merged_elements() -> None:
    m = meta(
        {
            "host": {
                "binaries": [
                    {"linux": [{"path": "/linux/a"}, {"path": "linux//./b"}]},
                    {"linux": [{"path": "/bin/c"}], "darwin": [{"path": "/darwin/a"}], "freebsd": 1},
                ],
                "x-rd-install": {"linux": ["x"]},
            }
        }
    )
    assert [b.path for b in m.binaries_for()] == ["/linux/a", "/linux/b", "/bin/c"]
    assert [b.name for b in m.binaries_for()] == ["a", "b", "c"]
    assert m.tab is None and m.vm is None


def test_backend_socket_fallback_and_precedence() -> None:
    tab = {"title": "T", "root": "ui", "src": "index.html", "backend": {"socket": "legacy.sock"}}
    assert meta({"ui": {"dashboard-tab": tab}, "vm": {"image": "x"}}).socket == "legacy.sock"
    both = meta({"ui": {"dashboard-tab": tab}, "vm": {"image": "x", "exposes": {"socket": "new.sock"}}})
    assert both.socket == "new.sock"


def test_image_wins_over_composefile() -> None:
    m = meta({"vm": {"image": "x", "composefile": "compose.yaml"}})
    assert m.vm == VmSpec("x", None, None)


def test_legacy_and_unknown_fields_are_ignored() -> None:
    m = meta(
        {
            "name": "old",
            "provider": "me",
            "desktop-plugin-version": "1",
            "desktop-plugin-name": "x",
            "info": {"anything": [1]},
            "x-rd-whatever": True,
            "ui": {
                "dashboard-tab": {
                    "title": " Title ",
                    "root": "/ui/",
                    "src": "./sub//page.html",
                    "backend": {"host-socket": "h.sock", "named-pipe": "\\\\.\\pipe\\x"},
                    "extra": 1,
                },
                "future-point": {"x": 1},
            },
            "vm": {
                "image": "x",
                "isolation": "dockerd",
                "exposes": {"host-socket": "h.sock", "named-pipe": "p"},
            },
        }
    )
    assert m.tab == DashboardTab("Title", "/ui", "sub/page.html", None)
    assert m.vm == VmSpec("x", None, None)
    assert m.raw["name"] == "old"


def test_icon_optional_and_empty() -> None:
    tab = {"title": "T", "root": "ui", "src": "index.html"}
    assert meta({"icon": "", "ui": {"dashboard-tab": tab}}).icon is None
    assert meta({"icon": None, "ui": {"dashboard-tab": tab}}).icon is None
    assert meta({"icon": "  ", "ui": {"dashboard-tab": tab}}).icon is None
    assert meta({"icon": "./assets//icon.png", "ui": {"dashboard-tab": tab}}).icon == "/assets/icon.png"


def test_bom_is_tolerated() -> None:
    doc = {"vm": {"image": "x"}}
    assert parse_metadata(b"\xef\xbb\xbf" + json.dumps(doc).encode()).vm == VmSpec("x", None, None)


# ---------------------------------------------------------------------------------------------------------
# metadata.json: errors name the field
# ---------------------------------------------------------------------------------------------------------

TAB = {"title": "T", "root": "/ui", "src": "index.html"}


def fails(doc: Any) -> MetadataError:
    with pytest.raises(MetadataError) as err:
        meta(doc)
    return err.value


def test_invalid_json() -> None:
    with pytest.raises(MetadataError) as err:
        parse_metadata(b'{"ui": {,}}')
    assert err.value.field == "metadata.json"
    assert err.value.problem.startswith("is not valid JSON: ")
    assert "line 1 column 9" in err.value.problem


def test_invalid_utf8() -> None:
    with pytest.raises(MetadataError) as err:
        parse_metadata(b'{"ui": "\xff"}')
    assert err.value.field == "metadata.json"
    assert "is not valid JSON" in err.value.problem and "UTF-8" in err.value.problem


def test_deep_nesting() -> None:
    with pytest.raises(MetadataError) as err:
        parse_metadata(b"[" * 100_000 + b"]" * 100_000)
    assert err.value.field == "metadata.json"


@pytest.mark.parametrize("doc", [[], "x", 1, None])
def test_top_level_not_an_object(doc: Any) -> None:
    assert fails(doc).field == "metadata.json"


def test_nothing_declared() -> None:
    err = fails({"icon": "x.svg"})
    assert (err.field, err.problem) == ("metadata.json", "declares no ui, vm or host section")
    assert fails({"ui": {}}).problem == "declares no ui, vm or host section"
    assert fails({"host": {"binaries": []}}).problem == "declares no ui, vm or host section"


@pytest.mark.parametrize(
    ("doc", "field", "problem"),
    [
        ({"ui": []}, "ui", "must be an object"),
        ({"ui": {"dashboard-tab": "x"}}, "ui.dashboard-tab", "object"),
        ({"ui": {"dashboard-tab": {"root": "/ui", "src": "i.html"}}}, "ui.dashboard-tab.title", "required"),
        ({"ui": {"dashboard-tab": {"title": "T", "src": "i.html"}}}, "ui.dashboard-tab.root", "required"),
        ({"ui": {"dashboard-tab": {"title": "T", "root": "/ui"}}}, "ui.dashboard-tab.src", "required"),
        ({"ui": {"dashboard-tab": {**TAB, "title": "  "}}}, "ui.dashboard-tab.title", "empty"),
        ({"ui": {"dashboard-tab": {**TAB, "title": 3}}}, "ui.dashboard-tab.title", "string"),
        (
            {"ui": {"dashboard-tab": {**TAB, "root": "../etc"}}},
            "ui.dashboard-tab.root",
            '".." is not allowed',
        ),
        ({"ui": {"dashboard-tab": {**TAB, "root": "/ui/../../etc"}}}, "ui.dashboard-tab.root", '".."'),
        ({"ui": {"dashboard-tab": {**TAB, "root": "/"}}}, "ui.dashboard-tab.root", "directory below /"),
        ({"ui": {"dashboard-tab": {**TAB, "root": "/ui\\x"}}}, "ui.dashboard-tab.root", "backslash"),
        ({"ui": {"dashboard-tab": {**TAB, "root": "/ui\x00"}}}, "ui.dashboard-tab.root", "NUL"),
        (
            {"ui": {"dashboard-tab": {**TAB, "src": "../secret"}}},
            "ui.dashboard-tab.src",
            '".." is not allowed',
        ),
        ({"ui": {"dashboard-tab": {**TAB, "src": "a/../../b"}}}, "ui.dashboard-tab.src", '".."'),
        ({"ui": {"dashboard-tab": {**TAB, "src": "./"}}}, "ui.dashboard-tab.src", "does not name a file"),
        ({"ui": {"dashboard-tab": {**TAB, "src": "https://x.io/"}}}, "ui.dashboard-tab.src", "remote URL"),
        ({"ui": {"dashboard-tab": {**TAB, "backend": "s"}}}, "ui.dashboard-tab.backend", "object"),
        (
            {"ui": {"dashboard-tab": {**TAB, "backend": {"socket": "a/b"}}}},
            "ui.dashboard-tab.backend.socket",
            "plain",
        ),
        ({"icon": 1, "vm": {"image": "x"}}, "icon", "string"),
        ({"icon": "../icon.svg", "vm": {"image": "x"}}, "icon", '".." is not allowed'),
        ({"icon": "/", "vm": {"image": "x"}}, "icon", "does not name a file"),
        ({"vm": "x"}, "vm", "object"),
        ({"vm": {}}, "vm", "image"),
        ({"vm": {"exposes": {"socket": "s.sock"}}}, "vm", "composefile"),
        ({"vm": {"image": ""}}, "vm.image", "empty"),
        ({"vm": {"image": 1}}, "vm.image", "string"),
        ({"vm": {"composefile": "../c.yaml"}}, "vm.composefile", '".." is not allowed'),
        ({"vm": {"composefile": 1}}, "vm.composefile", "string"),
        ({"vm": {"image": "x", "composefile": "/a/../../c.yaml"}}, "vm.composefile", '".."'),
        ({"vm": {"image": "x", "exposes": []}}, "vm.exposes", "object"),
        (
            {"vm": {"image": "x", "exposes": {"socket": "/run/guest-services/b.sock"}}},
            "vm.exposes.socket",
            "plain",
        ),
        ({"vm": {"image": "x", "exposes": {"socket": ".."}}}, "vm.exposes.socket", "not a file name"),
        ({"vm": {"image": "x", "exposes": {"socket": "a\\b"}}}, "vm.exposes.socket", "plain"),
        ({"vm": {"image": "x", "exposes": {"socket": "a\nb"}}}, "vm.exposes.socket", "control"),
        ({"vm": {"image": "x", "exposes": {"socket": "s" * 88}}}, "vm.exposes.socket", "longer than 87"),
        ({"vm": {"image": "x", "exposes": {"socket": ""}}}, "vm.exposes.socket", "empty"),
        ({"host": []}, "host", "object"),
        ({"host": {"binaries": {}}}, "host.binaries", "array"),
        ({"host": {"binaries": ["x"]}}, "host.binaries[0]", "object"),
        ({"host": {"binaries": [{"linux": {}}]}}, "host.binaries[0].linux", "array"),
        ({"host": {"binaries": [{"linux": ["x"]}]}}, "host.binaries[0].linux[0]", "object"),
        ({"host": {"binaries": [{"linux": [{}]}]}}, "host.binaries[0].linux[0].path", "required"),
        (
            {"host": {"binaries": [{"linux": [{"path": "/a"}, {"path": "/../etc/passwd"}]}]}},
            "host.binaries[0].linux[1].path",
            '".." is not allowed',
        ),
        ({"host": {"binaries": [{"linux": [{"path": "/"}]}]}}, "host.binaries[0].linux[0].path", "file"),
        (
            {"host": {"binaries": [{"linux": [{"path": "/a\\b"}]}]}},
            "host.binaries[0].linux[0].path",
            "backslash",
        ),
        (
            {"host": {"binaries": [{"linux": [{"path": "/x/a\tb"}]}]}},
            "host.binaries[0].linux[0].path",
            "control",
        ),
        (
            {"host": {"binaries": [{"linux": [{"path": "/" + "a" * 256}]}]}},
            "host.binaries[0].linux[0].path",
            "255",
        ),
        ({"host": {"binaries": [{"darwin": [{"path": 5}]}]}}, "host.binaries[0].darwin[0].path", "string"),
    ],
)
def test_field_errors(doc: Any, field: str, problem: str) -> None:
    err = fails(doc)
    assert err.field == field, str(err)
    assert problem in err.problem, str(err)
    assert str(err).startswith(f"invalid extension metadata: {field}: ")


def test_duplicate_binary_names() -> None:
    err = fails(
        {
            "host": {
                "binaries": [
                    {"linux": [{"path": "/linux/kubectl"}]},
                    {"linux": [{"path": "/other/kubectl"}], "darwin": [{"path": "/darwin/kubectl"}]},
                ]
            }
        }
    )
    assert err.field == "host.binaries[1].linux[0].path"
    assert "host.binaries[0].linux[0].path" in err.problem


def test_same_binary_declared_twice_is_harmless() -> None:
    m = meta({"host": {"binaries": [{"linux": [{"path": "/linux/k"}, {"path": "linux/k"}]}]}})
    assert m.binaries_for() == (HostBinary("/linux/k", "k"),)


# ---------------------------------------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------------------------------------


def test_labels_full() -> None:
    labels = parse_labels(
        {
            "org.opencontainers.image.title": "My extension",
            "org.opencontainers.image.description": "Cool.",
            "org.opencontainers.image.vendor": "Acme, Inc.",
            "com.docker.desktop.extension.api.version": ">= 0.2.3",
            "com.docker.desktop.extension.icon": "https://example.com/icon.svg",
            "com.docker.extension.screenshots": '\n  [{"alt": "one", "url": "https://example.com/1.png"},'
            ' {"url": "http://example.com/2.png"}, {"alt": "bad", "url": "javascript:alert(1)"},'
            ' "x", {"alt": 1}]',
            "com.docker.extension.detailed-description": "<h1>Hi</h1>",
            "com.docker.extension.publisher-url": "https://example.com",
            "com.docker.extension.additional-urls": '[{"title": "Docs", "url": "https://example.com/docs"},'
            ' {"url": "https://example.com/support"}, {"title": "x", "url": "file:///etc/passwd"}]',
            "com.docker.extension.changelog": "<ul><li>A</li></ul>",
            "com.docker.extension.account-info": "required",
            "com.docker.extension.categories": " kubernetes, security ,,kubernetes",
        }
    )
    assert labels.title == "My extension"
    assert labels.description == "Cool."
    assert labels.vendor == "Acme, Inc."
    assert labels.api_version == ">= 0.2.3"
    assert labels.icon_url == "https://example.com/icon.svg"
    assert labels.screenshots == (
        {"alt": "one", "url": "https://example.com/1.png"},
        {"alt": "", "url": "http://example.com/2.png"},
    )
    assert labels.detailed_description == "<h1>Hi</h1>"
    assert labels.publisher_url == "https://example.com"
    assert labels.additional_urls == (
        {"title": "Docs", "url": "https://example.com/docs"},
        {"title": "https://example.com/support", "url": "https://example.com/support"},
    )
    assert labels.changelog == "<ul><li>A</li></ul>"
    assert labels.account_info == "required"
    assert labels.categories == ("kubernetes", "security")


def test_labels_empty_and_missing() -> None:
    sources: list[dict[str, str] | None] = [None, {}]
    for source in sources:
        labels = parse_labels(source)
        assert labels.title is None and labels.screenshots == () and labels.categories == ()
    labels = parse_labels(
        {
            "org.opencontainers.image.title": "",
            "com.docker.extension.screenshots": "",
            "com.docker.extension.additional-urls": "  ",
            "com.docker.extension.categories": "",
            "com.docker.extension.changelog": " ",
        }
    )
    assert labels.title is None and labels.changelog is None
    assert labels.screenshots == () and labels.additional_urls == () and labels.categories == ()


def test_labels_invalid_json_is_not_an_error() -> None:
    labels = parse_labels(
        {
            "com.docker.extension.screenshots": "[{",
            "com.docker.extension.additional-urls": '{"title": "x", "url": "https://x.io"}',
        }
    )
    assert labels.screenshots == () and labels.additional_urls == ()


def test_labels_legacy_fallbacks() -> None:
    labels = parse_labels(
        {
            "com.docker.desktop.plugin.api.version": "0.1.0",
            "com.docker.desktop.plugin.icon": "https://example.com/old.svg",
            "org.opencontainers.image.authors": "Jane",
        }
    )
    assert labels.api_version == "0.1.0"
    assert labels.icon_url == "https://example.com/old.svg"
    assert labels.vendor == "Jane"
    # the current labels win
    labels = parse_labels(
        {
            "com.docker.desktop.extension.api.version": "0.4.2",
            "com.docker.desktop.plugin.api.version": "0.1.0",
            "org.opencontainers.image.vendor": "Acme",
            "org.opencontainers.image.authors": "Jane",
        }
    )
    assert (labels.api_version, labels.vendor) == ("0.4.2", "Acme")


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "file:///etc/passwd",
        "data:text/html,x",
        "//example.com",
        "https://",
        "ftp://x.io",
        "x",
    ],
)
def test_labels_non_http_urls_dropped(url: str) -> None:
    labels = parse_labels(
        {
            "com.docker.desktop.extension.icon": url,
            "com.docker.extension.publisher-url": url,
            "com.docker.extension.screenshots": json.dumps([{"alt": "a", "url": url}]),
        }
    )
    assert labels.icon_url is None and labels.publisher_url is None and labels.screenshots == ()


def test_labels_non_string_values_ignored() -> None:
    labels = parse_labels({"org.opencontainers.image.title": 5})  # type: ignore[dict-item]
    assert labels.title is None
