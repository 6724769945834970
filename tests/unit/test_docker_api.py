"""The Engine reads behind the Docker views and ``listContainers/listImages``, against a mock engine.

The pure parts (option mapping, stream framing, log lines, stats numbers, settings) are tested directly; the
routes go through the real app with the engine replaced by an ``httpx.MockTransport`` that records what it is
asked.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from dockext import settings
from dockext.dockerhost import DockerHost
from dockext.errors import EngineUnavailable, StateError
from dockext.paths import Layout
from dockext.server import HostState, create_app
from dockext.server.docker_api import InvalidOptions, list_params, set_engine
from dockext.server.engine_http import (
    Demuxer,
    EngineHTTP,
    EngineReplied,
    LogLines,
    endpoint,
    stats_summary,
    ts_to_since,
)

from .test_server import DASH, PORT, TOKEN, ext_url, install_fake, login, open_ui

EXT_LABELS = {"com.docker.desktop.extension": "true", "com.docker.compose.project": "acme-desktop-extension"}
CONTAINERS = [
    {"Id": "a" * 64, "Names": ["/web"], "Image": "nginx", "ImageID": "sha256:" + "1" * 64, "State": "running",
     "Labels": {}, "Mounts": [{"Type": "volume", "Name": "data"}]},
    {"Id": "b" * 64, "Names": ["/acme-desktop-extension-service"], "Image": "acme/ext:1.0",
     "ImageID": "sha256:" + "2" * 64, "State": "running", "Labels": EXT_LABELS, "Mounts": []},
]


# -- listContainers / listImages options ------------------------------------------------------------------

def test_options_map_to_engine_query_parameters():
    assert list_params({"all": True, "limit": 10, "size": False, "filters": {"status": ["exited"]},
                        "digests": True, "before": "abc", "since": "def", "shared-size": True}) == {
        "all": "1", "limit": "10", "size": "0", "filters": '{"status":["exited"]}', "digests": "1",
        "before": "abc", "since": "def", "shared-size": "1",
    }


def test_filters_given_as_a_json_string_pass_unchanged():
    text = json.dumps({"label": ["com.docker.desktop.extension=true"]})
    assert list_params({"filters": text}) == {"filters": text}


def test_unknown_and_null_options_are_ignored():
    assert list_params({"all": None, "format": "table", "quiet": True, "limit": 2}) == {"limit": "2"}
    assert list_params(None) == {}
    assert list_params({}) == {}


def test_loose_but_unambiguous_values_are_accepted():
    assert list_params({"all": "true", "size": 0, "limit": "5", "digests": "false"}) == {
        "all": "1", "size": "0", "limit": "5", "digests": "0",
    }
    assert list_params({"limit": 3.0}) == {"limit": "3"}


@pytest.mark.parametrize(
    "options",
    [[], "all", 3, {"all": "maybe"}, {"limit": "ten"}, {"limit": True}, {"limit": 2.5}, {"filters": 3},
     {"filters": ["a"]}, {"before": {"x": 1}}, {"all": 1.5}],
)
def test_wrong_option_types_are_refused(options: Any):
    with pytest.raises(InvalidOptions):
        list_params(options)


# -- engine endpoint, errors -----------------------------------------------------------------------------

def test_docker_host_forms():
    assert endpoint("unix:///var/run/docker.sock").uds == "/var/run/docker.sock"
    tcp = endpoint("tcp://10.0.0.5:2376")
    assert (tcp.base_url, tcp.tcp) == ("http://10.0.0.5:2376", ("10.0.0.5", 2376))
    assert endpoint("tcp://[::1]:2375").base_url == "http://[::1]:2375"
    assert endpoint("tcp://engine").tcp == ("engine", 2375)
    for bad in ("npipe:////./pipe/docker_engine", "unix://", "tcp://"):
        with pytest.raises(EngineUnavailable):
            endpoint(bad)
    # ssh:// goes through this process's dialer: a private unix socket (dockext/sshdial.py)
    ssh = endpoint("ssh://user@host:2222")
    assert ssh.uds and ssh.uds.endswith("/engine.sock") and os.stat(os.path.dirname(ssh.uds)).st_mode & 0o077 == 0
    assert endpoint("ssh://user@host:2222").uds == ssh.uds  # one dialer per address
    # TLS: https to the same host and port, the CLI's default port 2376 when none is given
    tls = endpoint(DockerHost("tcp://engine", tls=True, verify=False))
    assert (tls.base_url, tls.tcp, tls.ssl is not None) == ("https://engine:2376", ("engine", 2376), True)


def test_engine_statuses_become_error_types():
    assert (EngineReplied(404, "No such container: x").type, EngineReplied(404, "").http_status) == ("NotFound", 404)
    assert (EngineReplied(409, "").type, EngineReplied(409, "").http_status) == ("Conflict", 409)
    assert (EngineReplied(400, "").type, EngineReplied(400, "").http_status) == ("BadRequest", 400)
    assert (EngineReplied(500, "").type, EngineReplied(500, "").http_status) == ("EngineError", 502)


# -- stream framing and log lines ------------------------------------------------------------------------

def frame(stream: int, payload: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + struct.pack(">I", len(payload)) + payload


def test_demuxer_splits_stdout_and_stderr_even_across_chunks():
    data = frame(1, b"out one\n") + frame(2, b"err\n") + frame(1, b"") + frame(1, b"x" * 70000)
    d = Demuxer()
    got: list[tuple[int, bytes]] = []
    for i in range(0, len(data), 7):  # worst case: headers cut in the middle
        got += list(d.feed(data[i:i + 7]))
    assert got == [(1, b"out one\n"), (2, b"err\n"), (1, b""), (1, b"x" * 70000)]


def test_log_lines_carry_their_timestamp_and_stream():
    lines = LogLines()
    out = lines.feed("stdout", b"2024-05-01T10:00:00.123456789Z hello\n2024-05-01T10:00:01.5Z world\r\n")
    assert [(x.stream, x.ts, x.text, x.partial) for x in out] == [
        ("stdout", "2024-05-01T10:00:00.123456789Z", "hello", False),
        ("stdout", "2024-05-01T10:00:01.5Z", "world", False),
    ]
    err = lines.feed("stderr", b"2024-05-01T10:00:02Z oops\n")
    assert err[0].to_json() == {"s": "stderr", "t": "2024-05-01T10:00:02Z", "x": "oops"}


def test_unfinished_lines_wait_then_flush_as_partial():
    lines = LogLines()
    assert lines.feed("stdout", b"2024-05-01T10:00:00Z / # ") == []
    assert lines.pending
    flushed = lines.flush()
    assert [(x.text, x.partial) for x in flushed] == [("/ # ", True)]
    assert flushed[0].to_json()["p"] is True
    assert not lines.pending
    assert [(x.ts, x.text) for x in lines.feed("stdout", b"ls\n")] == [(None, "ls")]


def test_utf8_split_across_chunks_and_escape_sequences_are_cleaned():
    lines = LogLines()
    text = "2024-05-01T10:00:00Z \x1b[32mgrün\x1b[0m \x1b]0;title\x07ok\x07\n".encode()
    cut = text.index("ü".encode()) + 1
    assert lines.feed("stdout", text[:cut]) == []
    assert [x.text for x in lines.feed("stdout", text[cut:])] == ["grün ok"]
    assert [x.text for x in lines.feed("stdout", b"\xff\xfe bad bytes\n")] == ["\ufffd\ufffd bad bytes"]


def test_very_long_lines_are_cut_into_partial_pieces():
    lines = LogLines()
    out = lines.feed("stdout", b"y" * 40000 + b"\n")
    assert [len(x.text) for x in out] == [16384, 16384, 7232]
    assert [x.partial for x in out] == [True, True, False]


def test_since_resumes_one_nanosecond_after_the_last_line():
    assert ts_to_since("2024-05-01T10:00:00.123456789Z") == "1714557600.123456790"
    assert ts_to_since("2024-05-01T10:00:00Z") == "1714557600.000000001"
    assert ts_to_since("2024-05-01T10:00:00.999999999Z") == "1714557601.000000000"
    assert ts_to_since("2024-05-01T12:00:00+02:00") == "1714557600.000000001"
    assert ts_to_since("yesterday") is None


# -- stats -----------------------------------------------------------------------------------------------

def test_stats_cgroup_v1_sample():
    s = stats_summary({
        "read": "2024-05-01T10:00:01Z",
        "cpu_stats": {"cpu_usage": {"total_usage": 3_000_000, "percpu_usage": [1, 2]},
                      "system_cpu_usage": 200_000_000, "online_cpus": 2},
        "precpu_stats": {"cpu_usage": {"total_usage": 1_000_000}, "system_cpu_usage": 100_000_000},
        "memory_stats": {"usage": 10_000, "limit": 100_000, "stats": {"total_inactive_file": 2_000}},
        "networks": {"eth0": {"rx_bytes": 100, "tx_bytes": 50}, "eth1": {"rx_bytes": 1, "tx_bytes": 2}},
        "blkio_stats": {"io_service_bytes_recursive": [{"op": "Read", "value": 4096}, {"op": "Write", "value": 8},
                                                       {"op": "Total", "value": 4104}]},
        "pids_stats": {"current": 3},
    })
    assert s == {
        "read": "2024-05-01T10:00:01Z", "running": True, "cpu": {"percent": 4.0, "online": 2},
        "memory": {"used": 8000, "limit": 100_000, "percent": 8.0}, "network": {"rx": 101, "tx": 52},
        "block": {"read": 4096, "write": 8}, "pids": 3,
    }


def test_stats_cgroup_v2_sample_and_a_stopped_container():
    s = stats_summary({
        "read": "2024-05-01T10:00:01Z",
        "cpu_stats": {"cpu_usage": {"total_usage": 500}, "system_cpu_usage": 1000, "online_cpus": 4},
        "precpu_stats": {"cpu_usage": {"total_usage": 0}, "system_cpu_usage": 0},
        "memory_stats": {"usage": 5000, "limit": 10000, "stats": {"inactive_file": 1000}},
        "blkio_stats": {"io_service_bytes_recursive": [{"op": "read", "value": 1}, {"op": "write", "value": 2}]},
    })
    assert s["cpu"]["percent"] == 200.0
    assert s["memory"] == {"used": 4000, "limit": 10000, "percent": 40.0}
    assert s["block"] == {"read": 1, "write": 2}
    stopped = stats_summary({
        "read": "0001-01-01T00:00:00Z", "cpu_stats": {"cpu_usage": {"total_usage": 0}}, "precpu_stats": {},
        "memory_stats": {}, "blkio_stats": {"io_service_bytes_recursive": None},
    })
    assert stopped["running"] is False and stopped["read"] is None
    assert stopped["cpu"]["percent"] == 0.0 and stopped["memory"]["percent"] == 0.0


# -- settings --------------------------------------------------------------------------------------------

def test_settings_default_update_and_file(tmp_path: Path):
    assert settings.load(tmp_path) == settings.Settings(show_extension_containers=False)
    new = settings.update(tmp_path, {"show_extension_containers": True})
    assert new.show_extension_containers is True
    data = json.loads((tmp_path / "settings.json").read_text())
    assert data == {"schema": 1, "show_extension_containers": True}
    assert (tmp_path / "settings.json").stat().st_mode & 0o777 == 0o600
    assert settings.load(tmp_path).show_extension_containers is True


def test_settings_refuse_unknown_names_and_wrong_types(tmp_path: Path):
    with pytest.raises(settings.InvalidSetting, match="unknown setting"):
        settings.update(tmp_path, {"bogus": 1})
    with pytest.raises(settings.InvalidSetting, match="must be a bool"):
        settings.update(tmp_path, {"show_extension_containers": "yes"})
    assert not (tmp_path / "settings.json").exists()


def test_settings_tolerate_garbage_keep_unknown_keys_and_refuse_newer_schemas(tmp_path: Path):
    path = tmp_path / "settings.json"
    path.write_text("{not json")
    assert settings.load(tmp_path) == settings.Settings()
    path.write_text(json.dumps({"schema": 1, "show_extension_containers": "x", "later_thing": 5}))
    assert settings.load(tmp_path) == settings.Settings()
    settings.update(tmp_path, {"show_extension_containers": True})
    assert json.loads(path.read_text())["later_thing"] == 5
    path.write_text(json.dumps({"schema": 2, "show_extension_containers": False}))
    assert settings.load(tmp_path).show_extension_containers is False  # still readable
    with pytest.raises(StateError, match="newer dockext"):
        settings.update(tmp_path, {"show_extension_containers": True})


# -- routes, with a mock engine ---------------------------------------------------------------------------

class FakeEngine:
    """Answers like the Engine API for a few paths, and records each request."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.containers = [dict(c) for c in CONTAINERS]
        self.down = False
        self.podman = False  # answers as Podman 4 does: `digests` gets an empty body

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.down:
            raise httpx.ConnectError("connect ENOENT /var/run/docker.sock")
        path = request.url.path
        if path == "/containers/json":
            return httpx.Response(200, json=self.containers)
        if path == "/images/json":
            if request.url.params.get("filters") == "{bad":
                return httpx.Response(400, json={"message": "invalid filter"})
            if self.podman and "digests" in request.url.params:
                return httpx.Response(200, content=b"", headers={"Libpod-Api-Version": "4.3.1"})
            return httpx.Response(200, json=[{"Id": "sha256:" + "1" * 64, "RepoTags": ["nginx:latest"],
                                              "Containers": -1, "Size": 10}])
        if path == f"/containers/{'a' * 64}/json" or path == "/containers/web/json":
            return httpx.Response(200, json={"Id": "a" * 64, "Name": "/web", "Config": {"Tty": False},
                                             "State": {"Running": True}})
        if path == f"/containers/{'a' * 64}/logs":
            body = frame(1, b"2024-05-01T10:00:00Z hello\n") + frame(2, b"2024-05-01T10:00:01Z boom\n")
            return httpx.Response(200, content=body)
        if path == "/volumes":
            return httpx.Response(200, json={"Volumes": [{"Name": "data", "Driver": "local"},
                                                         {"Name": "spare", "Driver": "local"}], "Warnings": None})
        if path == "/volumes/data":
            return httpx.Response(200, json={"Name": "data", "Driver": "local"})
        if path.startswith("/containers/") or path.startswith("/volumes/") or path.startswith("/images/"):
            what = path.split("/")[1][:-1]
            return httpx.Response(404, json={"message": f"No such {what}: {path.split('/')[2]}"})
        return httpx.Response(404, json={"message": "page not found"})


@pytest.fixture
def env(tmp_path: Path):
    rec = install_fake(tmp_path, "acme_a")
    state = HostState(Layout(tmp_path), port=PORT, token=TOKEN)
    fake = FakeEngine()
    set_engine(state, EngineHTTP("unix:///nonexistent.sock", transport=httpx.MockTransport(fake.handle)))
    with TestClient(create_app(state), base_url=DASH, follow_redirects=False) as client:
        yield client, state, rec, fake


def ext_api(client: TestClient, state: HostState, rec) -> str:
    login(client)
    inst = open_ui(client, rec)
    origin = ext_url(state, rec)
    cap = inst["url"][len(origin):].split("/")[2]
    return f"{origin}/i/{cap}/__dockext__/docker"


def test_list_containers_for_an_extension_includes_extension_containers(env):
    client, state, rec, fake = env
    base = ext_api(client, state, rec)
    options = json.dumps({"all": True, "filters": {"label": ["com.docker.desktop.extension=true"]}, "x": 1})
    r = client.get(f"{base}/containers", params={"options": options}, headers={"X-Dockext": "1"})
    assert r.status_code == 200
    assert r.json() == CONTAINERS  # the Engine's own JSON, extension containers included
    sent = fake.requests[-1].url
    assert sent.path == "/containers/json"
    assert dict(sent.params) == {"all": "1", "filters": '{"label":["com.docker.desktop.extension=true"]}'}


def test_list_images_for_an_extension_and_its_errors(env):
    client, state, rec, fake = env
    base = ext_api(client, state, rec)
    r = client.get(f"{base}/images", params={"options": '{"digests": true}'}, headers={"X-Dockext": "1"})
    assert r.status_code == 200 and r.json()[0]["RepoTags"] == ["nginx:latest"]
    assert dict(fake.requests[-1].url.params) == {"digests": "1"}
    assert client.get(f"{base}/images", headers={"X-Dockext": "1"}).status_code == 200  # no options at all
    r = client.get(f"{base}/images", params={"options": '{"filters": "{bad"}'}, headers={"X-Dockext": "1"})
    assert r.status_code == 400 and r.json()["error"] == {"type": "BadRequest", "message": "invalid filter"}
    r = client.get(f"{base}/images", params={"options": "{nope"}, headers={"X-Dockext": "1"})
    assert r.status_code == 400
    r = client.get(f"{base}/containers", params={"options": '{"limit": "many"}'}, headers={"X-Dockext": "1"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "InvalidOptions"
    assert client.get(f"{base}/containers").status_code == 403  # no X-Dockext header
    assert client.get(f"{base}/networks", headers={"X-Dockext": "1"}).status_code == 404
    assert client.post(f"{base}/containers", headers={"X-Dockext": "1"}).status_code == 405
    fake.down = True
    r = client.get(f"{base}/containers", headers={"X-Dockext": "1"})
    assert r.status_code == 503 and r.json()["error"]["type"] == "EngineUnavailable"


def test_dashboard_list_hides_extension_containers_until_the_setting_says_so(env):
    client, _state, _rec, fake = env
    login(client)
    r = client.get("/api/docker/containers?all=1")
    assert r.status_code == 200
    body = r.json()
    assert [c["Names"][0] for c in body["containers"]] == ["/web"]
    assert (body["hidden"], body["show_extension_containers"]) == (1, False)
    assert dict(fake.requests[-1].url.params) == {"all": "1"}

    assert client.put("/api/settings", json={"show_extension_containers": True}).status_code == 403  # CSRF
    r = client.put("/api/settings", json={"show_extension_containers": True}, headers={"X-Dockext": "1"})
    assert r.status_code == 200 and r.json() == {"show_extension_containers": True}
    assert client.get("/api/settings").json() == {"show_extension_containers": True}
    body = client.get("/api/docker/containers").json()
    assert len(body["containers"]) == 2 and body["hidden"] == 0
    assert dict(fake.requests[-1].url.params) == {"all": "0"}

    r = client.put("/api/settings", json={"nope": True}, headers={"X-Dockext": "1"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "InvalidSetting"
    r = client.put("/api/settings", json=[1], headers={"X-Dockext": "1"})
    assert r.status_code == 400


def test_missing_objects_are_clear_404s(env):
    client, *_ = env
    login(client)
    for path, message in [
        ("/api/docker/containers/nope", "No such container: nope"),
        ("/api/docker/containers/nope/logs", "No such container: nope"),
        ("/api/docker/containers/nope/stats", "No such container: nope"),
        ("/api/docker/images/sha256:" + "9" * 64, "No such image: sha256:" + "9" * 64),
        ("/api/docker/volumes/nope", "No such volume: nope"),
        ("/api/docker/containers/.hidden", "No such container: .hidden"),
        ("/api/docker/images/a/%2E%2E/b", "No such image: a/../b"),
    ]:
        r = client.get(path)
        assert r.status_code == 404, path
        assert r.json() == {"error": {"type": "NotFound", "message": message}}, path
    for path in ["/api/docker/containers/..", "/api/docker/volumes/a%2F..%2Fb"]:
        assert client.get(path).status_code == 404  # never reaches the engine as a path


def test_container_inspect_images_and_volumes_with_usage(env):
    client, *_ = env
    login(client)
    assert client.get("/api/docker/containers/web").json()["Name"] == "/web"
    images = client.get("/api/docker/images").json()["images"]
    assert images[0]["Containers"] == 1  # counted from the containers when the engine says -1
    volumes = {v["Name"]: v for v in client.get("/api/docker/volumes").json()["volumes"]}
    assert volumes["data"]["UsageData"]["RefCount"] == 1 and volumes["spare"]["UsageData"]["RefCount"] == 0
    one = client.get("/api/docker/volumes/data").json()
    assert one["volume"]["Name"] == "data" and len(one["containers"]) == 2  # the mock ignores the filter
    assert set(one["containers"][0]) == {"Id", "Names", "Image", "ImageID", "State", "Status", "Labels"}


def test_logs_stream_as_server_sent_events_demultiplexed(env):
    client, _state, _rec, fake = env
    login(client)
    r = client.get(f"/api/docker/containers/{'a' * 64}/logs?tail=50&follow=1")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(r.text)
    lines = [line for name, data, _ in events if name == "logs" for line in data["lines"]]
    assert lines == [
        {"s": "stdout", "t": "2024-05-01T10:00:00Z", "x": "hello"},
        {"s": "stderr", "t": "2024-05-01T10:00:01Z", "x": "boom"},
    ]
    assert events[-1][0] == "end"
    assert [eid for name, _, eid in events if name == "logs"][-1] == "2024-05-01T10:00:01Z"
    params = dict(fake.requests[-1].url.params)
    assert params == {"stdout": "1", "stderr": "1", "timestamps": "1", "follow": "1", "tail": "50"}

    # a browser that reconnects sends Last-Event-ID: the log goes on after that line
    client.get(f"/api/docker/containers/{'a' * 64}/logs", headers={"Last-Event-ID": "2024-05-01T10:00:00Z"})
    params = dict(fake.requests[-1].url.params)
    assert (params["since"], params["tail"]) == ("1714557600.000000001", "all")
    assert client.get(f"/api/docker/containers/{'a' * 64}/logs?tail=lots").status_code == 400


def test_docker_routes_need_the_dashboard_session(env):
    client, *_ = env
    for path in ["/api/docker/containers", "/api/docker/images", "/api/docker/volumes", "/api/settings"]:
        assert client.get(path).status_code == 401


def parse_sse(text: str) -> list[tuple[str, Any, str | None]]:
    events = []
    for block in text.split("\n\n"):
        name, data, eid = "message", None, None
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
            elif line.startswith("id: "):
                eid = line[4:]
        if data is not None:
            events.append((name, data, eid))
    return events


def test_list_images_with_digests_on_podman_answers_the_images(env):
    """Podman 4 answers ``/images/json?digests=1`` with an empty body (each image has RepoDigests anyway): the
    extension gets the list asked again without ``digests``, with its other options."""
    client, state, rec, fake = env
    fake.podman = True
    base = ext_api(client, state, rec)
    options = json.dumps({"digests": True, "filters": {"reference": ["nginx"]}})
    r = client.get(f"{base}/images", params={"options": options}, headers={"X-Dockext": "1"})
    assert r.status_code == 200 and r.json()[0]["RepoTags"] == ["nginx:latest"]
    assert [dict(q.url.params) for q in fake.requests[-2:]] == [
        {"digests": "1", "filters": '{"reference":["nginx"]}'}, {"filters": '{"reference":["nginx"]}'}]


def test_vm_exec_is_refused_when_the_backends_container_is_not_there(env):
    """Found by a second security review: on a 404 the container's name itself was handed to `docker exec`,
    which looks the name up again when it runs; by then another extension's container could carry it (one whose
    compose file names another's container for a service never created, racing its recreation)."""
    from dockext.errors import ExecRefused
    from tests.support.aio import run

    _client, state, rec, fake = env
    assert rec.vm is not None
    with pytest.raises(ExecRefused, match=f"No such container: {rec.vm.container}"):
        run(state.vm_container(rec))
    assert fake.requests[-1].url.path == f"/containers/{rec.vm.container}/json"
