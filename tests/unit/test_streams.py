"""Streaming exec at the server level: the WebSocket protocol, its policy, and process lifetimes.

A fake installed extension (records on disk, host binaries written by the test) and Starlette's TestClient;
no engine. Processes are real: ``/proc`` shows what is left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from dockext import execution
from dockext.dockerhost import DockerHost
from dockext.errors import ExecRefused
from dockext.paths import Layout
from dockext.server import HostState, create_app
from dockext.store import Store
from tests.support.procs import marked, wait_until

from .test_server import DASH, PORT, TOKEN, ext_url, login, open_ui
from .test_store import make_record

SRC = Path(__file__).resolve().parents[2] / "src"

BINARIES = {
    # prints its arguments one per line, its cwd and $STREAMS_ENV
    "argv.sh": 'echo "argc=$#"; for a in "$@"; do echo "[$a]"; done; echo "cwd=$(pwd)"; '
               'echo "env=${STREAMS_ENV-unset}"',
    # a line, a pause, a line without newline on stdout; a line on stderr; exit 3
    # a pause between the two pipes: their relative order is only defined in time
    "ticker.sh": 'echo "tick 1"; sleep 0.1; echo "oops" >&2; sleep 0.5; printf "tick 2"; exit 3',
    # "é" (c3 a9) written one byte at a time, with a pause between
    "utf8.sh": "printf 'caf\\303'; sleep 0.3; printf '\\251\\n'",
    # runs until killed; its child carries the marker too ($1)
    "sleeper.sh": '(exec -a "sleep-$1" sleep 300) & echo "started $1"; wait',
    # leaves a background child behind (output closed) and exits 0
    "leaver.sh": '(exec -a "left-$1" sleep 300) >/dev/null 2>&1 & echo "left $1"',
    # would leave a trace if it ever ran
    "touch.sh": 'touch "$1"',
    "notexec.sh": "echo never",
    "gone.sh": None,  # declared, but the file is missing
}


def install(root: Path, key: str) -> None:
    layout = Layout(root)
    layout.ensure()
    d = layout.extension_dir(key)
    (d / "ui").mkdir(parents=True)
    (d / "ui" / "index.html").write_text("<html><head></head><body>hi</body></html>")
    (d / "host").mkdir()
    for name, body in BINARIES.items():
        if body is None:
            continue
        path = d / "host" / name
        path.write_text(f"#!/bin/bash\n{body}\n")
        path.chmod(0o644 if name == "notexec.sh" else 0o755)
    Store(layout).write(make_record(key, host_binaries=tuple(BINARIES), vm=None))


@pytest.fixture
def env(tmp_path):
    install(tmp_path, "acme_a")
    install(tmp_path, "acme_b")
    state = HostState(Layout(tmp_path), port=PORT, token=TOKEN)
    with TestClient(create_app(state), base_url=DASH, follow_redirects=False) as client:
        login(client)
        yield client, state


def stream_url(client, state, key: str = "acme_a", *, cap: str | None = None) -> tuple[str, str, dict]:
    """(ws URL, origin, instance) for a new UI instance of ``key``."""
    record = state.record(key)
    inst = open_ui(client, record)
    origin = ext_url(state, record)
    cap = cap or inst["url"][len(origin):].split("/")[2]
    return f"{origin.replace('http://', 'ws://')}/i/{cap}/__dockext__/stream", origin, inst


def receive(ws) -> dict:
    """The next message: output ({"stdout"|"stderr": bytes}, from the binary frames) or the JSON of a text one."""
    message = ws.receive()
    if message["type"] == "websocket.close":
        raise WebSocketDisconnect(message.get("code", 1000))
    if message.get("bytes") is not None:
        data = message["bytes"]
        assert data[:1] in (b"\x01", b"\x02"), data[:20]
        return {"stdout" if data[:1] == b"\x01" else "stderr": data[1:]}
    return json.loads(message["text"])


def messages(ws) -> list[dict]:
    """Every message until the server closes; the close code is appended as {"closed": code}."""
    out = []
    while True:
        try:
            out.append(receive(ws))
        except WebSocketDisconnect as exc:
            out.append({"closed": exc.code})
            return out


def run(client, state, request: dict) -> list[dict]:
    url, origin, _ = stream_url(client, state)
    with client.websocket_connect(url, headers={"Origin": origin}) as ws:
        ws.send_text(json.dumps(request))
        return messages(ws)


def text(msgs: list[dict], key: str) -> str:
    return b"".join(m.get(key, b"") for m in msgs).decode()


# -------------------------------------------------------------------------------------------- protocol


def test_output_streams_as_it_comes_then_exit_and_a_normal_close(env):
    client, state = env
    url, origin, _ = stream_url(client, state)
    with client.websocket_connect(url, headers={"Origin": origin}) as ws:
        ws.send_text(json.dumps({"cli": "host", "cmd": "ticker.sh", "args": []}))
        first = receive(ws)
        first_at = time.monotonic()
        rest = messages(ws)
        ended_at = time.monotonic()
    assert first == {"stdout": b"tick 1\n"}
    assert ended_at - first_at > 0.3  # not held back until the process ends (it sleeps 0.5 s in between)
    assert [m for m in rest if "stderr" in m] == [{"stderr": b"oops\n"}]
    assert text([first, *rest], "stdout") == "tick 1\ntick 2"
    assert rest[-2:] == [{"exit": 3, "signal": None}, {"closed": 1000}]
    assert all(len(m) == 1 for m in rest[:-2])  # one key per output message


def test_args_are_passed_verbatim_with_cwd_and_env(env, tmp_path):
    client, state = env
    msgs = run(client, state, {
        "cli": "host", "cmd": "argv.sh", "args": ["a b", "'c'", "$(id)", ""],
        "options": {"cwd": str(tmp_path), "env": {"STREAMS_ENV": "x y"}},
    })
    assert text(msgs, "stdout") == f"argc=4\n[a b]\n['c']\n[$(id)]\n[]\ncwd={tmp_path}\nenv=x y\n"
    assert msgs[-2:] == [{"exit": 0, "signal": None}, {"closed": 1000}]


def test_output_bytes_pass_untouched_even_a_character_split_between_reads(env):
    client, state = env
    msgs = run(client, state, {"cli": "host", "cmd": "utf8.sh", "args": []})
    outputs = [m["stdout"] for m in msgs if "stdout" in m]
    assert outputs == [b"caf\xc3", b"\xa9\n"]  # the page's per-stream decoder joins them
    assert text(msgs, "stdout") == "café\n"


def test_close_message_ends_the_process_group_and_reports_sigterm(env, marker):
    client, state = env
    url, origin, _ = stream_url(client, state)
    with client.websocket_connect(url, headers={"Origin": origin}) as ws:
        ws.send_text(json.dumps({"cli": "host", "cmd": "sleeper.sh", "args": [marker]}))
        assert receive(ws) == {"stdout": f"started {marker}\n".encode()}
        # the binary and its child (which may still be inside execve, its command line empty for that instant)
        assert wait_until(lambda: len(marked(marker)) == 2, 5), marked(marker)
        ws.send_text(json.dumps({"close": True}))
        rest = messages(ws)
    assert rest == [{"exit": 143, "signal": "SIGTERM"}, {"closed": 1000}]
    assert marked(marker) == {}  # the exit message comes once the whole group is gone


def test_a_page_that_goes_away_takes_its_processes_along(env, marker):
    client, state = env
    url, origin, _ = stream_url(client, state)
    with client.websocket_connect(url, headers={"Origin": origin}) as ws:
        ws.send_text(json.dumps({"cli": "host", "cmd": "sleeper.sh", "args": [marker]}))
        assert receive(ws) == {"stdout": f"started {marker}\n".encode()}
    assert wait_until(lambda: marked(marker) == {}, 5)


def test_closing_the_ui_instance_ends_its_streams_and_what_its_commands_left_behind(env, marker):
    client, state = env
    url, origin, inst = stream_url(client, state)
    with client.websocket_connect(url, headers={"Origin": origin}) as ws:
        ws.send_text(json.dumps({"cli": "host", "cmd": "leaver.sh", "args": [marker]}))
        assert messages(ws)[-2:] == [{"exit": 0, "signal": None}, {"closed": 1000}]
    # outlives the command, as in Node (waited for: the child may not have reached its execve yet)
    assert wait_until(lambda: list(marked(marker).values()) == [f"left-{marker} 300"], 5), marked(marker)
    with client.websocket_connect(url, headers={"Origin": origin}) as ws:
        ws.send_text(json.dumps({"cli": "host", "cmd": "sleeper.sh", "args": [marker + "-s"]}))
        assert receive(ws) == {"stdout": f"started {marker}-s\n".encode()}
        assert client.delete(f"/api/ui-instances/{inst['instance']}", headers={"X-Dockext": "1"}).status_code == 204
        assert messages(ws) == [{"exit": 143, "signal": "SIGTERM"}, {"closed": 1000}]
    assert marked(marker) == {}  # ... but not its UI


# ---------------------------------------------------------------------------------- refusals, failures


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"cli": "docker", "cmd": "-H", "args": ["unix:///tmp/evil.sock", "ps"]}, "may not start with the option '-H'"),
        ({"cli": "docker", "cmd": "--context", "args": ["x", "ps"]}, "may not start with the option '--context'"),
        ({"cli": "docker", "cmd": "", "args": ["ps"]}, "no command given"),
        ({"cli": "docker", "cmd": "ps", "args": [], "options": {"env": {"DOCKER_HOST": "tcp://x"}}},
         "DOCKER_HOST is not allowed"),
        ({"cli": "host", "cmd": "touch.sh", "args": ["{trace}"], "options": {"env": {"LD_PRELOAD": "/x.so"}}},
         "LD_PRELOAD is not allowed"),
        ({"cli": "host", "cmd": "touch", "args": ["{trace}"]}, "'touch' is not a host binary of this extension"),
        ({"cli": "host", "cmd": "../../../bin/touch", "args": ["{trace}"]}, "must be a plain file name"),
        ({"cli": "host", "cmd": "touch.sh", "args": ["{trace}\x00"]}, "NUL"),
        ({"cli": "vm", "cmd": "ls", "args": []}, "has no backend"),
        ({"cli": "shell", "cmd": "ls", "args": []}, "unknown cli"),
        ({"cli": "host", "cmd": "touch.sh", "args": "{trace}"}, "list of string arguments"),
        # a lone surrogate, which JSON carries and no argv can (found by a bug hunt: it escaped as an exception,
        # leaving the four pipe fds open and the page without an answer)
        ({"cli": "host", "cmd": "touch.sh", "args": ["{trace}", "\ud800"]}, "holds a lone UTF-16 surrogate"),
        ({"cli": "docker", "cmd": "\udfff", "args": []}, "holds a lone UTF-16 surrogate"),
        ({"cli": "host", "cmd": "touch.sh", "args": ["{trace}"], "options": {"env": {"A": "\ud800"}}},
         "holds a lone UTF-16 surrogate"),
        ({"cli": "host", "cmd": "touch.sh", "args": ["{trace}"], "options": {"cwd": "/tmp/\ud800"}},
         "holds a lone UTF-16 surrogate"),
    ],
)
def test_policy_refusals_are_errors_and_nothing_runs(env, tmp_path, request_, message):
    client, state = env
    trace = tmp_path / "trace"
    body = json.loads(json.dumps(request_).replace("{trace}", str(trace)))
    msgs = run(client, state, body)
    assert len(msgs) == 2, msgs
    assert msgs[0]["type"] == "ExecRefused" and msgs[0]["code"] == 126
    assert message in msgs[0]["error"]
    assert msgs[1] == {"closed": 1008}
    assert not trace.exists()


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        ({"cli": "host", "cmd": "gone.sh", "args": []}, (127, "gone.sh: not found")),
        ({"cli": "host", "cmd": "notexec.sh", "args": []}, (126, "notexec.sh: permission denied")),
        ({"cli": "host", "cmd": "argv.sh", "args": [], "options": {"cwd": "/nonexistent-dockext"}},
         (127, "cwd /nonexistent-dockext: no such directory")),
    ],
)
def test_commands_that_cannot_start_are_errors_with_a_status(env, request_, expected):
    client, state = env
    msgs = run(client, state, request_)
    assert msgs[0]["type"] == "ExecError"
    assert (msgs[0]["code"], msgs[0]["error"].rsplit("/", 1)[-1]) == (expected[0], expected[1].rsplit("/", 1)[-1])
    assert msgs[1] == {"closed": 1000}


@pytest.mark.parametrize("first", ["not json", "[1, 2]", json.dumps("x" * 10), "[" * 50_000])  # too deep to parse
def test_a_first_message_that_is_not_a_request_is_refused(env, first):
    client, state = env
    url, origin, _ = stream_url(client, state)
    with client.websocket_connect(url, headers={"Origin": origin}) as ws:
        ws.send_text(first)
        msgs = messages(ws)
    assert msgs[0]["type"] == "BadRequest"
    assert msgs[1] == {"closed": 1008}


def test_too_many_processes_for_one_ui_are_refused(env, marker, monkeypatch):
    client, state = env
    monkeypatch.setattr(execution, "MAX_PROCESSES", 1)
    url, origin, _ = stream_url(client, state)
    with client.websocket_connect(url, headers={"Origin": origin}) as ws:
        ws.send_text(json.dumps({"cli": "host", "cmd": "sleeper.sh", "args": [marker]}))
        assert receive(ws) == {"stdout": f"started {marker}\n".encode()}
        with client.websocket_connect(url, headers={"Origin": origin}) as second:
            second.send_text(json.dumps({"cli": "host", "cmd": "argv.sh", "args": []}))
            refused = messages(second)
        assert refused[0]["type"] == "ExecRefused" and "already runs 1 commands" in refused[0]["error"]


# ------------------------------------------------------------------------------------ who may connect


def test_the_socket_needs_the_extensions_own_origin_and_capability(env):
    client, state = env
    url, origin, _ = stream_url(client, state, "acme_a")
    other_url, other_origin, _ = stream_url(client, state, "acme_b")
    cap = url.split("/i/")[1].split("/")[0]
    other_cap = other_url.split("/i/")[1].split("/")[0]
    refused = [
        (url, {"Origin": "http://evil.example"}),  # a foreign page
        (url, {"Origin": DASH}),  # the dashboard is another origin too
        (url, {}),  # no Origin at all: not a browser page of this extension
        (url.replace(cap, "wrong-capability"), {"Origin": origin}),
        (url.replace(cap, other_cap), {"Origin": origin}),  # another extension's capability on our origin
        (other_url.replace(other_cap, cap), {"Origin": other_origin}),  # our capability on its origin
        (url.replace("__dockext__/stream", "__dockext__/other"), {"Origin": origin}),
    ]
    for target, headers in refused:
        with pytest.raises(WebSocketDisconnect) as caught, client.websocket_connect(target, headers=headers):
            pass
        assert caught.value.code == 1008, (target, headers)
    with client.websocket_connect(url, headers={"Origin": origin}) as ws:  # the page itself
        ws.send_text(json.dumps({"cli": "host", "cmd": "argv.sh", "args": ["ok"]}))
        assert "[ok]" in text(messages(ws), "stdout")


# ---------------------------------------------------------------------------------- execution, pure parts


def test_plan_verbatim_keeps_args_whole_and_keeps_the_policy(tmp_path):
    record = make_record("acme_a", host_binaries=("argv.sh",))
    plan = execution.plan(record, tmp_path, "docker", "run", ["--name", "a b", "'x'"], None,
                          docker_host=DockerHost("unix:///d.sock"), verbatim=True)
    assert plan.argv[1:] == ["run", "--name", "a b", "'x'"]
    assert plan.display == "docker run --name a b 'x'"
    assert plan.env["DOCKER_HOST"] == "unix:///d.sock"
    split = execution.plan(record, tmp_path, "docker", "run", ["--name", "a b", "'x'"], None, docker_host=DockerHost("unix:///d"))
    assert split.argv[1:] == ["run", "--name", "a", "b", "x"]
    host = execution.plan(record, tmp_path, "host", "argv.sh", ["a b"], {"cwd": "/tmp"}, docker_host=DockerHost("x"),
                          verbatim=True)
    assert host.argv == [str(tmp_path / "host" / "argv.sh"), "a b"] and host.cwd == "/tmp"
    vm = execution.plan(make_record("acme_a"), tmp_path, "vm", "sh", ["-c", "echo a b"], {"env": {"A": "1"}},
                        docker_host=DockerHost("x"), verbatim=True)
    assert vm.argv[1:] == ["exec", "--env", "A=1", "c", "sh", "-c", "echo a b"]
    for cli, cmd, args in [("docker", "-H", ["x"]), ("docker", "", []), ("host", "argv.sh ", []),
                           ("host", "../argv.sh", [])]:
        with pytest.raises(ExecRefused):
            execution.plan(record, tmp_path, cli, cmd, args, None, docker_host=DockerHost("x"), verbatim=True)


def test_docker_and_compose_get_none_of_dockexts_own_environment(tmp_path, monkeypatch):
    """Found in a review: `environment: [DOCKEXT_TOKEN]` in a backend's compose file (or `docker run -e NAME`
    through docker.cli.exec) takes NAME's value from the process that runs Compose (or the CLI), which was given
    dockext's whole environment: the dashboard's token, a cloud key. Only what they need reaches them now; a host
    binary, which runs as the user anyway, keeps the user's environment."""
    from dockext.composecli import Compose

    monkeypatch.setenv("DOCKEXT_TOKEN", "s3cret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "k3y")
    monkeypatch.setenv("DOCKER_CONFIG", "/cfg")
    record = make_record("acme_a", host_binaries=("argv.sh",))
    engine = DockerHost("unix:///d.sock")
    docker = execution.plan(record, tmp_path, "docker", "run", ["-e", "DOCKEXT_TOKEN", "x"], {"env": {"MINE": "1"}},
                            docker_host=engine, verbatim=True)
    vm = execution.plan(make_record("acme_a"), tmp_path, "vm", "env", [], None, docker_host=engine, verbatim=True)
    compose = Compose(engine)._env({"DESKTOP_PLUGIN_IMAGE": "acme/a:1"})
    for env in (docker.env, vm.env, compose):
        assert "DOCKEXT_TOKEN" not in env and "AWS_SECRET_ACCESS_KEY" not in env
        assert env["DOCKER_HOST"] == "unix:///d.sock" and env["DOCKER_CONFIG"] == "/cfg" and "PATH" in env
    assert docker.env["MINE"] == "1" and compose["DESKTOP_PLUGIN_IMAGE"] == "acme/a:1"
    host = execution.plan(record, tmp_path, "host", "argv.sh", [], None, docker_host=engine, verbatim=True)
    assert host.env["DOCKEXT_TOKEN"] == "s3cret"


def test_exit_status_is_what_a_shell_reports():
    assert execution.exit_status(0) == (0, None)
    assert execution.exit_status(3) == (3, None)
    assert execution.exit_status(-signal.SIGTERM) == (143, "SIGTERM")
    assert execution.exit_status(-signal.SIGKILL) == (137, "SIGKILL")


# ------------------------------------------------------------------------------------ dying with dockext

SPAWNER = """
import asyncio, os, sys
from dockext.execution import ExecPlan, ProcessGroup
marker = os.environ["MARKER"]  # not in our own argv: only the spawned processes carry it
async def main():
    group = ProcessGroup()
    script = f'(exec -a "sleep-{marker}" sleep 300) & echo ready; wait'
    proc = await group.spawn(ExecPlan(["/bin/bash", "-c", script, marker], None, dict(os.environ), "x"))
    print((await proc.stdout.readline()).decode().strip(), flush=True)
    await asyncio.sleep(300)
asyncio.run(main())
"""


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_processes_die_with_a_dockext_killed_without_warning(marker, how):
    """PR_SET_PDEATHSIG ends the direct child; the guardian ends the whole group (the grandchild too)."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "MARKER": marker}
    spawner = subprocess.Popen([sys.executable, "-c", SPAWNER], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert spawner.stdout is not None
        assert spawner.stdout.readline().strip() == "ready"
        # bash, and its child sleep-<marker>: the child may still be inside execve when "ready" arrives,
        # and /proc/<pid>/cmdline reads empty for that instant
        assert wait_until(lambda: len(marked(marker)) == 2, 5), marked(marker)
        spawner.send_signal(getattr(signal, how))  # SIGTERM: no handler in the spawner, so no clean-up either
        spawner.wait(5)
        assert wait_until(lambda: marked(marker) == {}, 6), marked(marker)
    finally:
        spawner.kill()
        spawner.wait()
