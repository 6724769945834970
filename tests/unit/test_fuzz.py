"""Property-based fuzzing of everything dockext reads from an image or a page (reference S38).

An extension image is untrusted input: its ``metadata.json``, its labels, its compose file; so is what an
extension page sends (exec arguments and environment) and what the engine streams back. For each reader the
property is the same: it returns, or it raises the one documented error for that input (a
:class:`~dockext.errors.DockextError` naming the field), never anything else (no KeyError, TypeError,
RecursionError...), so the user always sees a message and the rest of dockext keeps running.

Inputs are both random JSON/YAML values and documents shaped like real metadata with hostile leaves (paths
with ``..``, NUL, huge or empty strings, wrong types). ``derandomize`` keeps CI reproducible: the same examples
every run; a failure prints the smallest input that breaks it.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dockext import argv as policy
from dockext import backendpolicy, compose, model, permissions, sockperm, validate
from dockext.errors import DockextError
from dockext.server.engine_http import Demuxer, LogLines, stats_summary

FUZZ = settings(max_examples=1500, derandomize=True, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

HOSTILE_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from([
        "", "/", "..", "../x", "/ui/../../etc", "a/b", "/ui", "ui", "index.html", "http://evil/", "\x00", "a\x00b",
        "backend.sock", "a/b.sock", "${DESKTOP_PLUGIN_IMAGE}", "C:\\x", "%2e%2e/", "~",
        ">= 0.3.3", "0.4.2", "<=x", "1.2.3-rc.1+b", "javascript:alert(1)", "<img src=x onerror=alert(1)>",
    ]),
    st.builds(lambda c, n: c * n, st.sampled_from(["x", "/", "../", "é"]), st.integers(100, 5000)),
)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), HOSTILE_TEXT)
JSON_VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(HOSTILE_TEXT, inner, max_size=4),
    max_leaves=25,
)


def maybe(key: str, value: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(st.just({}), value.map(lambda v: {key: v}))


def merged(*parts: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.tuples(*parts).map(lambda ds: {k: v for d in ds for k, v in d.items()})


LEAF = st.one_of(HOSTILE_TEXT, JSON_VALUES)
TAB = merged(maybe("title", LEAF), maybe("root", LEAF), maybe("src", LEAF),
             maybe("backend", merged(maybe("socket", LEAF)) | LEAF))
BINARY = st.lists(merged(maybe("path", LEAF)) | LEAF, max_size=3)
PLATFORMS = st.lists(merged(maybe("linux", BINARY), maybe("darwin", BINARY), maybe("windows", BINARY)) | LEAF,
                     max_size=3)
METADATA = merged(
    maybe("ui", merged(maybe("dashboard-tab", TAB | LEAF)) | LEAF),
    maybe("vm", merged(maybe("image", LEAF), maybe("composefile", LEAF),
                       maybe("exposes", merged(maybe("socket", LEAF)) | LEAF)) | LEAF),
    maybe("host", merged(maybe("binaries", PLATFORMS | LEAF)) | LEAF),
    maybe("icon", LEAF),
)
LABEL_NAMES = st.sampled_from([
    "org.opencontainers.image.title", "org.opencontainers.image.description", "org.opencontainers.image.vendor",
    "com.docker.desktop.extension.api.version", "com.docker.desktop.extension.icon",
    "com.docker.extension.screenshots", "com.docker.extension.detailed-description",
    "com.docker.extension.publisher-url", "com.docker.extension.additional-urls", "com.docker.extension.changelog",
    "com.docker.extension.categories", "com.docker.extension.account-info",
]) | st.text(max_size=20)
LABEL_VALUES = HOSTILE_TEXT | JSON_VALUES.map(json.dumps)
LABELS = st.dictionaries(LABEL_NAMES, LABEL_VALUES, max_size=8)
SERVICE = merged(
    maybe("image", LEAF), maybe("volumes", st.lists(LEAF | merged(maybe("type", LEAF), maybe("source", LEAF),
                                                                   maybe("target", LEAF)), max_size=4) | LEAF),
    maybe("privileged", LEAF), maybe("network_mode", LEAF), maybe("pid", LEAF), maybe("devices", LEAF),
    maybe("cap_add", LEAF), maybe("labels", LEAF), maybe("restart", LEAF), maybe("deploy", LEAF),
    maybe("container_name", LEAF),
)
COMPOSE = merged(maybe("services", st.dictionaries(HOSTILE_TEXT, SERVICE | LEAF, max_size=3) | LEAF),
                 maybe("volumes", LEAF), maybe("name", LEAF))


def returns_or_explains(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn``; a DockextError is an answer (with a message), anything else fails the property."""
    try:
        return fn(*args, **kwargs)
    except DockextError as exc:
        assert exc.message, f"{type(exc).__name__} without a message"
        return None


@FUZZ
@given(METADATA | JSON_VALUES)
def test_metadata_json_is_parsed_or_refused_with_the_field_named(doc: Any) -> None:
    raw = json.dumps(doc).encode()
    returns_or_explains(model.parse_metadata, raw)
    check = model.check_metadata(raw)  # validate's view: every problem listed, never raised
    assert all(p.field and p.problem for p in check.problems)
    assert (check.metadata is not None) == (not check.problems)
    findings, _ = validate.check_metadata(raw)
    assert all(f.message for f in findings)


@FUZZ
@given(st.binary(max_size=200))
def test_metadata_that_is_not_json_is_refused(data: bytes) -> None:
    returns_or_explains(model.parse_metadata, data)
    model.check_metadata(data)


@FUZZ
@given(LABELS)
def test_labels_never_break_the_listing_the_marketplace_or_validate(labels: dict[str, str]) -> None:
    parsed = model.parse_labels(labels)
    for url in (parsed.publisher_url, *[u["url"] for u in parsed.additional_urls]):
        assert url is None or url.startswith(("http://", "https://"))
    assert all(f.message for f in validate.check_labels(labels))
    for strict in (True, False):
        validate.check_api_version(labels, strict=strict)


@FUZZ
@given(HOSTILE_TEXT, HOSTILE_TEXT, st.lists(HOSTILE_TEXT, max_size=5))
def test_version_constraints_and_tags(constraint: str, version: str, tags: list[str]) -> None:
    assert validate.satisfies(constraint, version) in (True, False, None)
    best = validate.greatest_semver(tags)
    assert best is None or best in tags


@FUZZ
@given(HOSTILE_TEXT | st.text(alphabet="abcz09:/@._-", max_size=60))
def test_image_references(text: str) -> None:
    ref = returns_or_explains(model.ImageRef.parse, text)
    if ref is not None:
        assert model.extension_key(ref) and model.compose_project(model.extension_key(ref))


@FUZZ
@given(COMPOSE | JSON_VALUES)
def test_compose_files_are_rewritten_or_refused(doc: Any) -> None:
    text = yaml.safe_dump(doc).encode()
    parsed = returns_or_explains(compose.parse, text)
    if parsed is None:
        return
    asked = permissions.requested(parsed)
    assert all(isinstance(line, str) for line in asked.lines())
    returns_or_explains(backendpolicy.check_isolation, parsed, "k-desktop-extension")
    restricted = returns_or_explains(backendpolicy.restrict, parsed, engine=False, system=False,
                                     engine_socket="/var/run/docker.sock")
    if restricted is not None:  # what is left asks for nothing of the host
        left = permissions.requested(restricted)
        assert not left.asks("engine") and not left.asks("system"), left
    for mount in (compose.guest_services_bind("/gs/abcd"), compose.guest_services_volume()):
        out = returns_or_explains(compose.rewrite, parsed, key="k", project="k-desktop-extension", image="i:1",
                                  title="T", engine_socket="/var/run/docker.sock", guest_services=mount,
                                  extra_services={sockperm.RELAY_SERVICE: {"image": "relay"}})
        if out is not None:
            assert yaml.safe_load(out.dump())["name"] == "k-desktop-extension"


@FUZZ
@given(HOSTILE_TEXT, st.lists(HOSTILE_TEXT, max_size=6), st.dictionaries(HOSTILE_TEXT, SCALARS, max_size=4))
def test_exec_requests_from_a_page(cmd: str, args: list[str], env: dict[str, Any]) -> None:
    tokens = returns_or_explains(policy.split_command_line, cmd, args)
    if tokens is not None:
        argv = returns_or_explains(policy.docker_argv, tokens)
        assert argv is None or not argv[0].startswith("-")
    clean = returns_or_explains(policy.sanitize_env, env)
    if clean is not None:
        assert not any(k.startswith(("LD_", "DOCKER_HOST", "DOCKER_CONTEXT")) or k == "PATH" for k in clean)
    returns_or_explains(policy.host_binary, cmd, ["tool", "other.sh"])


@FUZZ
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_engine_streams_in_any_pieces(chunks: list[bytes]) -> None:
    demux, logs = Demuxer(), LogLines()
    for chunk in chunks:
        for kind, payload in demux.feed(chunk):
            assert kind in (1, 2) and isinstance(payload, bytes)
        logs.feed("stdout", chunk)
    logs.flush()
    sockperm.refusal(b"".join(chunks).decode(errors="replace"))


@FUZZ
@given(JSON_VALUES)
def test_stats_samples_of_any_shape(sample: Any) -> None:
    if isinstance(sample, dict):
        returns_or_explains(stats_summary, sample)
