"""The command line as people and scripts see it, without an engine: tables, exits, hints and refusals.

Commands run with click's CliRunner against a dockext home in a temporary directory; DOCKER_HOST points at a
socket that does not exist, so nothing here can reach an engine.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from dockext import cli as cli_module
from dockext import devmode, permissions
from dockext.cli import CliReporter, cli, handle_errors
from dockext.errors import DockextError
from dockext.paths import Layout
from dockext.store import Record, Store, UiInfo, VmInfo
from tests.support.procs import wait_until

LONG_ID = "127.0.0.1:5000/some-very-long-namespace/with-a-long-extension-name"
IMAGE_ID = "sha256:" + "0123456789abcdef" * 4


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Layout:
    layout = Layout(tmp_path / "home")
    layout.ensure()
    monkeypatch.setenv("DOCKEXT_HOME", str(layout.root))
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    monkeypatch.chdir(tmp_path)
    return layout


@pytest.fixture
def narrow(monkeypatch: pytest.MonkeyPatch) -> None:
    """An 80-column output, as `dockext ls | cat` gets."""
    monkeypatch.setattr(cli_module, "out", Console(width=80, highlight=False, markup=False))


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def add_record(layout: Layout, ext_id: str, version: str, *, vm: VmInfo | None = None,
               title: str = "A Rather Long Title") -> Record:
    key = ext_id.replace("/", "_").replace(".", "_").replace(":", "_")
    record = Record(
        key=key, id=ext_id, image=f"{ext_id}:{version}", image_id="sha256:" + "1" * 64, version=version,
        title=title, provider="Some Provider Incorporated", origin_slug="ext-abc123", installed_at=1.0,
        ui=UiInfo(title=title, src="index.html"), vm=vm,
    )
    layout.extension_dir(key).mkdir(parents=True)
    Store(layout).write(record)
    return record


# -- 1: tables are never shortened ------------------------------------------------------------------------

def test_ls_never_shortens_a_cell_to_the_terminals_width(home: Layout, narrow: None) -> None:
    add_record(home, LONG_ID, "1.0.0-beta.123456789")
    add_record(home, "a/b", "1")
    result = run("ls")
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["ID", "PROVIDER", "VERSION", "UI", "VM", "HOST"]
    assert [line.split()[0] for line in lines[1:]] == [LONG_ID, "a/b"]  # what `awk '{print $1}'` gets
    assert lines[1].split("  ")[0] == LONG_ID and "1.0.0-beta.123456789" in lines[1]
    assert "1 tab(A Rather Long Title)" in lines[1] and lines[1].rstrip().endswith("-")  # VM and HOST are there


def test_permissions_ls_keeps_its_header_on_one_line_and_its_ids_whole(home: Layout, narrow: None) -> None:
    add_record(home, LONG_ID, "1.0.0")
    result = run("permissions", "ls")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["ID", "DOCKER", "HOST", "WEB", "ENGINE", "SYSTEM", "NETWORK", "BACKEND", "ASKS",
                                 "FOR"]
    assert lines[1].startswith(LONG_ID + "  ") and "…" not in result.output
    assert len(lines) == 2  # not a terminal: one line per row, the last column unwrapped too


# -- 2: a progress bar is stopped before anything else is printed --------------------------------------------

class Boom(Exception):
    pass


@pytest.mark.parametrize("raised", [DockextError("the pull failed"), KeyboardInterrupt(), Boom("unexpected")])
def test_every_exit_stops_the_progress_bar_and_shows_the_cursor_first(
    raised: BaseException, monkeypatch: pytest.MonkeyPatch
) -> None:
    screen = io.StringIO()  # stdout and stderr on one terminal
    monkeypatch.setattr(cli_module, "out", Console(file=screen, force_terminal=True, width=80))
    monkeypatch.setattr(cli_module, "err", Console(file=screen, force_terminal=True, width=80))

    @handle_errors
    def pulling() -> None:
        reporter = CliReporter(cli_module.out)
        reporter.pull({"id": "layer1", "status": "Downloading", "progressDetail": {"current": 5, "total": 100}})
        raise raised

    with pytest.raises((SystemExit, Boom)) as caught:
        pulling()
    text = screen.getvalue()
    assert "\x1b[?25l" in text  # the bar hid the cursor
    shown = text.rindex("\x1b[?25h")
    assert shown > text.rindex("\x1b[?25l")
    if isinstance(raised, DockextError):
        assert caught.value.args == (1,) and text.index("Error:") > shown
    elif isinstance(raised, KeyboardInterrupt):
        assert caught.value.args == (130,) and text.index("Interrupted.") > shown
    assert not CliReporter.live


# -- 3: the VM column ---------------------------------------------------------------------------------------

def vm_record() -> Record:
    return Record(key="acme_ext", id="acme/ext", image="acme/ext:1", image_id="sha256:" + "1" * 64, version="1",
                  title="t", provider="p", origin_slug="acme-ext-abc123", installed_at=1.0,
                  vm=VmInfo(project="p-desktop-extension", first_service="api", container="c", socket=None,
                            gs_key="k"))


@pytest.mark.parametrize(("states", "shown"), [
    (["running"], "Running(1)"),
    (["exited", "running"], "Running(1)"),  # running wins, with the number running
    (["exited", "exited", "running"], "Running(1)"),
    (["running", "running", "exited"], "Running(2)"),
    (["exited", "exited", "created"], "Exited(2)"),  # the most common, with its own count
    (["exited", "created"], "Created(1)"),  # a tie: the fixed order, whatever the engine's order
    (["created", "exited"], "Created(1)"),
    (["dead", "exited"], "Exited(1)"),
    (["paused", "restarting", "exited"], "Restarting(1)"),
    ([], "Missing(0)"),
])
def test_the_vm_column_is_deterministic_and_counts_the_state_it_names(states: list[str], shown: str) -> None:
    record = vm_record()
    assert cli_module._row(record, {record.vm.project: states})["vm"] == shown  # type: ignore[union-attr]
    assert cli_module._row(record, {record.vm.project: states[::-1]})["vm"] == shown  # type: ignore[union-attr]


# -- 4, 5, 6: image IDs, digests and the server's port --------------------------------------------------------

@pytest.mark.parametrize("command", [["install", "-f"], ["update", "-f"], ["validate"], ["share"], ["rm"]])
@pytest.mark.parametrize("ref", [IMAGE_ID, IMAGE_ID.removeprefix("sha256:")])
def test_an_image_id_is_refused_where_an_extension_is_named(home: Layout, command: list[str], ref: str) -> None:
    result = run(*command, ref)
    assert result.exit_code == 1, result.output
    assert "is an image ID, not an image name" in result.output
    assert "An extension is installed by name" in result.output
    assert not (home.root / "extensions" / "sha256").exists()


def test_share_refuses_a_digest_instead_of_dropping_it(home: Layout) -> None:
    result = run("share", f"acme/ext:1.0@{IMAGE_ID}")
    assert result.exit_code == 1, result.output
    assert "cannot carry the digest" in result.output and "dockext share acme/ext:1.0" in result.output
    assert "latest" not in result.output and "Share this link" not in result.output


@pytest.fixture
def process() -> Iterator[subprocess.Popen[bytes]]:
    """A process whose command line names dockext, as `dockext serve`'s does. Popen returns when the child's
    close-on-exec pipe closes, which the kernel does before it sets the new command line: until then
    /proc/<pid>/cmdline can read empty (seen once in CI), so the fixture waits for it (a server that wrote its
    server.json is long past this)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "dockext.cli", "serve"])
    wait_until(lambda: b"dockext.cli" in Path(f"/proc/{proc.pid}/cmdline").read_bytes(), interval=0.005)
    yield proc
    proc.kill()
    proc.wait()


def share_port(home: Layout, pid: int, port: int = 8123, base: str = "http://dockext.localhost:{port}") -> str:
    url = base.format(port=port) + "/?token=t"
    (home.root / "server.json").write_text(json.dumps({"url": url, "port": port, "pid": pid}))
    result = run("share", "acme/ext:1.0")
    assert result.exit_code == 0, result.output
    return result.output.split("Share this link: ", 1)[1].split()[0]


def test_share_names_the_address_of_a_running_server_only(home: Layout, process: subprocess.Popen[bytes]) -> None:
    assert share_port(home, process.pid) == "http://dockext.localhost:8123/#/marketplace/install/acme/ext:1.0"
    # served with --domain and TLS: the link names that address (never the token)
    assert share_port(home, process.pid, 8443, "https://Dockext.Example.lan:{port}") == (
        "https://dockext.example.lan:8443/#/marketplace/install/acme/ext:1.0")
    assert share_port(home, process.pid, 443, "https://dockext.example.lan") == (  # the default port: no port
        "https://dockext.example.lan/#/marketplace/install/acme/ext:1.0")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert share_port(home, dead.pid).startswith("http://dockext.localhost:7683/")  # killed: its file stayed
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:  # its number given to another program since
        assert share_port(home, other.pid).startswith("http://dockext.localhost:7683/")
    finally:
        other.kill()
        other.wait()
    assert share_port(home, 0).startswith("http://dockext.localhost:7683/")
    (home.root / "server.json").write_text(json.dumps({"port": 8123}))  # no pid: no server to trust
    assert run("share", "acme/ext").output.split("Share this link: ", 1)[1].startswith("http://dockext.localhost:7683/")


# -- 7: serve's options -----------------------------------------------------------------------------------

@pytest.mark.parametrize("port", ["99999", "-1", "65536"])
def test_serve_refuses_a_port_out_of_range_without_a_traceback(home: Layout, port: str) -> None:
    result = run("serve", "--no-browser", "--port", port)
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--port'" in result.output and "0<=x<=65535" in result.output
    assert not isinstance(result.exception, OverflowError)


# `dockext serve` in a process of its own, with the CLI's handlers; echo() runs after server.json is written, in
# the moment before uvicorn's handlers are in place. A SIGTERM it sends itself there is handled inside a finalizer,
# where an exception is only printed: until stop 25 the server then went on, and no SIGTERM stopped it any more
# (a test that stopped a server just after its server.json appeared timed out under load).
SIGNAL_IN_A_FINALIZER = """
import os, signal, sys
from pathlib import Path
from dockext import cli
from dockext.paths import Layout
from dockext.server import run

class Finalized:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler runs in this loop, within the finalizer
            pass

def echo(line):
    print(line, flush=True)
    Finalized()

cli.unwind_on_termination()
try:
    run.serve(Layout(Path(sys.argv[1])), port=0, open_browser=False, echo=echo)
except cli.Terminated as exc:
    print("stopped by", exc, flush=True)
    sys.exit(143)
"""


def test_a_signal_while_the_server_starts_stops_it_once_it_has_started(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", SIGNAL_IN_A_FINALIZER, str(tmp_path / "home")], capture_output=True,
                          text=True, timeout=30, env={**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert proc.returncode == 143, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "stopped by SIGTERM" and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "home" / "server.json").exists()


@pytest.mark.parametrize(("sig", "code", "said"), [(signal.SIGTERM, 143, "Stopped by SIGTERM."),
                                                   (signal.SIGHUP, 129, "Stopped by SIGHUP."),
                                                   (signal.SIGINT, 130, "Interrupted.")])
def test_a_running_server_stops_on_a_signal_and_says_so(tmp_path: Path, sig: int, code: int, said: str) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "DOCKEXT_HOME": str(home), "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    proc = subprocess.Popen([sys.executable, "-m", "dockext.cli", "serve", "--no-browser", "--port", "0"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("dockext dashboard: ")  # written once server.json is
        assert wait_until(lambda: _listening(json.loads((home / "server.json").read_text())["port"]), timeout=30)
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == code and out.strip() == said, out
    assert not (home / "server.json").exists()


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


@pytest.mark.parametrize("host", ["256.1.1.1", "192.0.2.1", "1.2.3"])
def test_an_address_that_cannot_be_listened_on_gets_a_hint_about_the_host(host: str) -> None:
    from dockext.server.run import bind

    with pytest.raises(DockextError) as caught:
        bind(host, 0)
    assert caught.value.message.startswith(f"cannot listen on {host}")
    assert "--host" in (caught.value.hint or "") and "--port" not in (caught.value.hint or "")


def test_serving_beyond_loopback_says_what_the_token_does_not_guard(
    home: Layout, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dockext.server import run as server_run

    bound: list[socket.socket] = []
    real_bind = server_run.bind

    def on_loopback(host: str, port: int) -> socket.socket:  # the test itself never listens beyond loopback
        bound.append(real_bind("127.0.0.1", 0))
        return bound[-1]

    monkeypatch.setattr(server_run, "bind", on_loopback)
    monkeypatch.setattr(server_run.uvicorn.Server, "run", lambda self, sockets=None: None)
    try:
        said: list[str] = []
        server_run.serve(home, host="0.0.0.0", port=0, open_browser=False, echo=said.append)
        port = bound[0].getsockname()[1]
        assert said[0].startswith(f"dockext dashboard: http://dockext.localhost:{port}/?token=")
        notice = " ".join(said[1:])
        assert notice.startswith(f"Listening on 0.0.0.0:{port}: anyone who can reach it still needs the token.")
        assert "plain HTTP" in notice and "unencrypted" in notice and "*.dockext.localhost" in notice
        assert f"ssh -L {port}:127.0.0.1:{port} THIS-HOST" in notice
        said.clear()
        server_run.serve(home, host="127.0.0.1", port=0, open_browser=False, echo=said.append)
        assert len(said) == 1  # on loopback: the URL alone
    finally:
        for sock in bound:
            sock.close()


def test_a_port_in_use_still_gets_the_hint_about_the_port() -> None:
    from dockext.server.run import bind

    first = bind("127.0.0.1", 0)
    try:
        port = first.getsockname()[1]
        with pytest.raises(DockextError) as caught:
            bind("127.0.0.1", port)
        assert "--port" in (caught.value.hint or "")
    finally:
        first.close()


# -- 8, 9 -----------------------------------------------------------------------------------------------------

def test_the_image_option_without_a_file_suggests_the_install_by_name_that_was_meant(home: Layout) -> None:
    result = run("install", "-f", "clihunt/vm-image:1.0.0", "--image", "x")
    assert result.exit_code == 1, result.output
    assert "dockext install clihunt/vm-image:1.0.0" in result.output
    assert "dockext install x" not in result.output


def test_dev_reset_refuses_an_extension_it_knows_nothing_of_but_resets_leftover_settings(home: Layout) -> None:
    result = run("dev", "reset", "never/installed")
    assert result.exit_code == 1, result.output
    assert "extension never/installed is not installed" in result.output
    assert run("dev", "debug", "never/installed").exit_code == 1  # as debug and ui-source refuse it
    devmode.set_debug(home, "gone_ext")  # settings left by an extension removed since
    result = run("dev", "reset", "gone/ext")
    assert result.exit_code == 0, result.output
    assert "Developer mode of gone/ext is off" in result.output and devmode.load(home) == {}
    add_record(home, "acme/ext", "1.0")
    assert run("dev", "reset", "acme/ext").exit_code == 0  # installed, without settings: nothing to do, fine


# -- 10: paths, not references --------------------------------------------------------------------------------

@pytest.mark.parametrize(("where", "arg"), [("", "."), ("project", ".."), ("", "{tmp}/project"), ("", "project/"),
                                            ("", "My Project")])
def test_validate_a_directory_without_metadata_json_says_so(
    home: Layout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, arg: str
) -> None:
    for name in ("project", "My Project"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "README").write_text("hi")
    monkeypatch.chdir(tmp_path / where)
    arg = arg.format(tmp=tmp_path)
    result = run("validate", arg)
    assert result.exit_code == 1, result.output
    assert f"Error: no metadata.json in {arg}" in result.output
    assert "invalid image reference" not in result.output


def test_a_directory_named_like_an_image_is_still_the_image(home: Layout, tmp_path: Path) -> None:
    (tmp_path / "project").mkdir()
    result = run("validate", "project")
    assert result.exit_code == 1 and "no metadata.json" not in result.output  # the engine is asked (and not there)
    assert "cannot reach the Docker engine" in result.output


def test_validate_a_directory_with_metadata_json_checks_that_file(home: Layout, tmp_path: Path) -> None:
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "metadata.json").write_text("{")
    result = run("validate", str(tmp_path / "project"))
    assert "invalid image reference" not in result.output and "metadata.json" in result.output


def test_validate_shows_the_metadatas_own_keys_without_their_control_characters(home: Layout, tmp_path: Path) -> None:
    """Found in a review: an unknown key is named in a warning, and a key holding an escape sequence rewrote the
    terminal (erased the line before it, set the window's title)."""
    hostile = "\x1b[1A\x1b[2K\x1b]0;OWNED\x07x"
    (tmp_path / "metadata.json").write_text(json.dumps({"ui": {}, hostile: 1}))
    result = run("validate", str(tmp_path / "metadata.json"))
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "\\x1b[1A\\x1b[2K\\x1b]0;OWNED\\x07x: is not a metadata.json field" in result.output


@pytest.mark.parametrize("arg", [".", ".."])
def test_install_of_a_directory_says_it_is_no_oci_layout(home: Layout, arg: str) -> None:
    result = run("install", "-f", arg)
    assert result.exit_code == 1, result.output
    assert f"Error: {arg} is a directory, but not an OCI image layout" in result.output
    assert "repository path component" not in result.output


# -- 11: uninstall, and the plugin's message ---------------------------------------------------------------

def test_uninstall_is_rm_and_is_listed_in_help(home: Layout) -> None:
    help_text = run("--help").output
    assert "uninstall" in help_text and "The same as rm" in help_text
    result = run("uninstall", "--help")
    assert result.exit_code == 0 and "--forget" in result.output
    result = run("uninstall", "acme/ext")
    assert result.exit_code == 1 and "extension acme/ext is not installed" in result.output


def test_plugin_install_names_every_command_it_brings(home: Layout) -> None:
    result = run("plugin", "install")
    assert result.exit_code == 0, result.output
    listed = re.search(r"\(([^)]*)\) now runs dockext", result.output)
    assert listed is not None, result.output
    assert set(re.split(r", | or ", listed.group(1))) == {
        "init", "install", "update", "ls", "rm", "uninstall", "validate", "dev", "share", "version"}


# -- 12: cosmetics ------------------------------------------------------------------------------------------

def test_every_format_option_is_explained(home: Layout) -> None:
    for command in (["ls"], ["marketplace", "ls"], ["permissions", "ls"]):
        help_text = " ".join(run(*command, "--help").output.split())
        assert "--format [table|json] table: for people" in help_text and "json: every field" in help_text, command


@pytest.mark.parametrize(("answer", "code"), [(KeyboardInterrupt, 130), (EOFError, 1), ("n", 1)])
def test_ctrl_c_at_a_prompt_exits_130_like_every_interrupt(
    answer: type[BaseException] | str, code: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def prompt(text: str) -> str:
        if isinstance(answer, str):
            return answer
        raise answer()

    monkeypatch.setattr(click.termui, "visible_prompt_func", prompt)

    @handle_errors
    def asking() -> None:
        click.confirm("Are you sure you want to continue?", abort=True)

    command = click.Command("asking", callback=asking)
    with pytest.raises(SystemExit) as caught:
        command.main([], standalone_mode=True)
    assert caught.value.code == code
    said = capsys.readouterr().err
    assert ("Interrupted." in said) == (code == 130) and ("Aborted!" in said) == (code == 1)


@pytest.mark.parametrize("command", ["install", "update"])
@pytest.mark.parametrize(("answer", "goes_on"), [("n", False), ("y", True)])
def test_install_and_update_ask_docker_s_question_at_a_terminal_and_no_ends_them(
    command: str, answer: str, goes_on: bool, home: Layout, monkeypatch: pytest.MonkeyPatch
) -> None:
    import click.testing

    monkeypatch.setattr(click.testing._NamedTextIOWrapper, "isatty", lambda self: True)  # stdin is a terminal
    reached: list[str] = []
    monkeypatch.setattr(cli_module, "Installer", lambda *a, **k: reached.append(command) or sys.exit(7))
    result = CliRunner().invoke(cli, [command, "acme/ext:1.0"], input=f"{answer}\n")
    assert "Extensions can install binaries, invoke commands and access files on your machine." in result.output
    assert (result.exit_code, reached) == ((7, [command]) if goes_on else (1, []))
    assert ("Aborted!" in result.output) is not goes_on
    result = CliRunner().invoke(cli, [command, "-f", "acme/ext:1.0"])  # -f: no question
    assert "Extensions can install" not in result.output and result.exit_code == 7


def test_permissions_set_names_only_what_the_backend_asks_for(home: Layout, monkeypatch: pytest.MonkeyPatch) -> None:
    from dockext.installer import Installer

    add_record(home, "acme/ext", "1.0", vm=vm_record().vm)
    asked = permissions.requested(
        {"services": {"api": {"image": "x", "volumes": ["/var/run/docker.sock:/var/run/docker.sock"]}}})
    assert asked.asks("engine") and asked.asks("network") and not asked.asks("system")
    (home.extension_dir("acme_ext") / permissions.REQUESTED_FILE).write_text(json.dumps(asked.to_json()))

    def set_permissions(self: Installer, image: str, **changes: bool) -> tuple[permissions.Grants, bool]:
        return permissions.set_grants(self.layout, "acme_ext", **changes), False

    monkeypatch.setattr(Installer, "set_permissions", set_permissions)
    result = run("permissions", "set", "acme/ext", "engine=allow", "network=deny")
    assert result.exit_code == 0, result.output
    assert "can still reach the network through the engine's socket" in result.output
    assert "deny engine too to cut it off" in result.output
    assert "system" not in result.output


def test_under_the_plugin_the_commands_a_message_names_are_spelt_docker_extension(home: Layout) -> None:
    """Found by a bug hunt: hints under `docker extension` named `dockext` commands, and the plugin runs dockext's
    Python directly, so `dockext` may not be on the PATH."""
    result = CliRunner().invoke(cli, ["rm", "acme/nothere"], prog_name="docker extension")
    assert result.exit_code == 1
    assert "`docker extension ls` lists the installed extensions." in result.output, result.output
    assert "dockext ls" not in result.output
    plain = run("rm", "acme/nothere")
    assert "`dockext ls` lists the installed extensions." in plain.output, plain.output


def test_ls_says_why_the_backends_states_are_unknown(home: Layout) -> None:
    """Found by a bug hunt: `Unknown(engine unreachable)` with nothing saying which engine, or why."""
    add_record(home, "a/b", "1", vm=VmInfo(project="p-desktop-extension", first_service="api", container="c",
                                           socket=None, gs_key="k"))
    result = run("ls")
    assert result.exit_code == 0, result.output
    assert "Unknown(engine unreachable)" in result.stdout
    assert ("dockext: the backends' states are unknown: cannot reach the Docker engine at "
            "unix:///nonexistent/docker.sock") in result.stderr, result.stderr


def test_the_images_words_reach_the_terminal_without_their_control_characters(home: Layout) -> None:
    """Found in a security review: a title or vendor label with escape sequences was printed raw by install,
    ls and marketplace ls, so an image could rewrite the terminal (hide the lines saying what its backend gets)."""
    hostile = "Vend\x1b]0;OWNED\x07\x1b[1A\x1b[2K\r"
    add_record(home, "a/b", "1", title=hostile)
    result = run("ls")
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output and "\r" not in result.output
    assert "Vend\\x1b]0;OWNED\\x07\\x1b[1A\\x1b[2K\\x0d" in result.output
    console = Console(file=io.StringIO(), width=200, highlight=False, markup=False)
    CliReporter(console).step(f'Extension UI tab "{hostile}" added.\nIt gets: nothing more')
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b" not in shown and shown.endswith("\\x0d\" added.\nIt gets: nothing more\n"), shown


@pytest.mark.parametrize("engine_env", [{"DOCKER_CONTEXT": "nope"}, {}])
def test_marketplace_ls_lists_without_an_engine_to_ask_about_insecure_registries(
        home: Layout, monkeypatch: pytest.MonkeyPatch, engine_env: dict[str, str]) -> None:
    """Without an engine to ask which registries it takes as insecure (a context that does not exist, or an engine
    that does not answer: DOCKER_HOST of the fixture), the listing goes on."""
    for name, value in engine_env.items():
        monkeypatch.delenv("DOCKER_HOST")  # it would win over the context
        monkeypatch.setenv(name, value)
    assert run("marketplace", "add", "127.0.0.1:9/acme").exit_code == 0  # nothing listens on port 9
    result = run("marketplace", "ls")
    assert result.exit_code == 1
    assert "127.0.0.1:9/acme: cannot reach 127.0.0.1:9: connection refused" in result.output
    assert "context" not in result.output
