"""The Docker engine restarts under a running dockext (reference R11): every backend comes back and is reached
again through the same server, and the dashboard's engine views recover. And R5: dockerd restarted or killed
(`kill -9`) under an install or an update, and the `docker compose` child of an install killed.

Backends have `restart: always`, as Docker Desktop makes them: one the user stopped by hand runs again after the
engine restarts (R11's "stays stopped" would need `unless-stopped`, which Docker Desktop does not use; the
choice is in docs/compatibility.md)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from dockext.installer import ENGINE_BACK_WAIT, PENDING_FILE
from tests.support.cli import run_dockext
from tests.support.engine import dockerd_argv, restart_dockerd
from tests.support.server import start_server
from tests.support.session import Session

from .test_install import assert_nothing_left, get_over_socket, labelled, ls_json, record
from .test_interrupts import read_until, start

pytestmark = pytest.mark.engine

PREFIX = "dockext-restart"


def eventually(check, timeout: float = 90.0):
    """``check()``'s first truthy value; its last error if none comes within ``timeout`` (not a speed test)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (httpx.HTTPError, AssertionError, OSError) as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {last}")


def test_backends_come_back_after_an_engine_restart_and_dockext_reaches_them(tmp_path, fixture_image, docker_client):
    """Also R13: the stale-socket backend listens like Node's (no removing an old socket file first), so after
    the restart it fails with EADDRINUSE until the server removes the socket its killed run left."""
    home = tmp_path / "home"
    refs = (fixture_image("vm-image", repo_prefix=PREFIX), fixture_image("compose", repo_prefix=PREFIX),
            fixture_image("stale-socket", repo_prefix=PREFIX))
    for ref in refs:
        run_dockext("install", "-f", ref, home=home)
    stale_sock = home / "gs" / record(home, f"{PREFIX}_stale-socket")["vm"]["gs_key"] / "stale.sock"
    server = start_server(home)
    try:
        session = Session(server)
        uis = [session.open_ui(f"{PREFIX}_vm-image"), session.open_ui(f"{PREFIX}_compose"),
               session.open_ui(f"{PREFIX}_stale-socket")]
        session.wait_backend(uis[0])
        session.wait_backend(uis[1], "/whoami")
        session.wait_backend(uis[2])
        before = stale_sock.stat()
        socket_before = (before.st_ino, before.st_ctime_ns)  # the inode number alone may be reused
        # one backend stopped by hand: restart: always brings it back with the engine, as in Docker Desktop
        for ctr in labelled(docker_client, f"com.docker.compose.project={PREFIX}_compose-desktop-extension"):
            ctr.stop(timeout=5)

        took = restart_dockerd()
        print(f"dockerd answered again {took:.1f} s after SIGTERM")

        def answers(ui, path: str, expected: dict) -> bool:
            with session.page(ui, timeout=5) as c:
                r = c.get(f"{ui.api}/vm{path}")
                return r.status_code == 200 and r.json() == expected

        t0 = time.monotonic()
        eventually(lambda: answers(uis[0], "/hello", {"message": "hello from vm-image"}))
        eventually(lambda: answers(uis[1], "/whoami", {"hostname": "compose-api"}))
        with session.page(uis[2], timeout=5) as c:
            eventually(lambda: c.get(f"{uis[2].api}/vm/hello").json().get("message") == "hello from stale-socket")
        after = stale_sock.stat()
        assert (after.st_ino, after.st_ctime_ns) != socket_before  # a new socket: the old file was removed
        assert "nothing listened on it" in server.log.read_text()
        # the same server and UI instances: its pooled connections to the old sockets were replaced
        print(f"both backends answered again {time.monotonic() - t0:.1f} s after the engine did")
        with session.dashboard() as dash:  # the dashboard's own engine client reconnected
            eventually(lambda: dash.get("/api/docker/containers").status_code == 200)
        rows = {r["id"]: r["vm"] for r in json.loads(run_dockext("ls", "--format", "json", home=home).stdout)}
        assert rows == {f"{PREFIX}/vm-image": "Running(1)", f"{PREFIX}/compose": "Running(2)",
                        f"{PREFIX}/stale-socket": "Running(1)"}
    finally:
        server.stop()
        for ref in refs:
            run_dockext("rm", ref, home=home, check=False)
        # named volumes outlive rm, as in Docker Desktop: the compose fixture's goes here
        for volume in docker_client.volumes.list(filters={"name": f"{PREFIX}_compose-desktop-extension_"}):
            volume.remove()


def assert_no_project_objects(docker_client, project: str) -> None:
    """No container, network or volume of the compose project is left (assert_nothing_left looks at containers
    and files)."""
    label = f"com.docker.compose.project={project}"
    assert labelled(docker_client, label) == []
    assert [n.name for n in docker_client.networks.list(filters={"label": label})] == []
    assert [v.name for v in docker_client.volumes.list(filters={"label": label})] == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["restart", "kill-9"])
def test_an_install_the_engine_restarts_under_ends_whole_or_undone(tmp_path, fixture_image, docker_client, sig):
    """R5: dockerd stops while `compose up` runs, with SIGTERM (a restart) or SIGKILL (a crash), and is started
    again. Either the install completed, or it failed and was undone with nothing left behind (the next command,
    `ls`, finishes an undo the engine's absence cut short); either way an install (again) then works."""
    home = tmp_path / "home"
    ref = fixture_image("compose", tag="1.1.0", repo_prefix=PREFIX)  # two services, a network and a volume
    key, project = f"{PREFIX}_compose", f"{PREFIX}_compose-desktop-extension"
    proc = start(home, "install", "-f", ref, DOCKEXT_BACKEND_TIMEOUT="60")
    read_until(proc, "Starting service in Desktop VM")
    # once compose has made something of the project (its network comes first): what the engine must undo
    made = eventually(lambda: docker_client.networks.list(filters={"label": f"com.docker.compose.project={project}"}))
    restart_dockerd(sig=sig)
    out, err = proc.communicate(timeout=180)
    print(f"{made} existed; install exited {proc.returncode} after dockerd's {sig.name}:\n{out[-600:]}\n{err[-600:]}")
    try:
        if proc.returncode == 0:
            assert [r["image"] for r in ls_json(home)] == [ref]
        else:
            assert "Removing extension (install failed)" in out, out + err
            assert ls_json(home) == []
            assert_nothing_left(home, docker_client, key, project)
            assert_no_project_objects(docker_client, project)
            run_dockext("install", "-f", ref, home=home)  # the retry
        rec = record(home, key)
        sock = home / "gs" / rec["vm"]["gs_key"] / "compose.sock"
        status, _ = eventually(lambda: get_over_socket(sock, "/whoami") if sock.exists() else None)
        assert status == 200
    finally:
        remove_all(home, docker_client, ref, project)
    assert_nothing_left(home, docker_client, key, project)
    assert_no_project_objects(docker_client, project)


def test_an_install_whose_engine_stays_away_is_undone_by_the_next_command(tmp_path, fixture_image, docker_client):
    """R5, a long outage: dockerd is killed while an install waits for its backend, and stays down longer than
    the undo waits for it (ENGINE_BACK_WAIT). The install fails and says that the next command finishes removing
    it; its files stay, unlisted (deleting them would orphan what compose made); once the engine is back, `ls`
    finishes the undo, and nothing of the project is left."""
    home = tmp_path / "home"
    ref = fixture_image("bad-no-socket", repo_prefix=PREFIX)  # a backend that never makes its socket
    key, project = f"{PREFIX}_bad-no-socket", f"{PREFIX}_bad-no-socket-desktop-extension"
    wait = 6  # for the socket; then the undo waits ENGINE_BACK_WAIT for the engine: it is back after both
    proc = start(home, "install", "-f", ref, DOCKEXT_BACKEND_TIMEOUT=str(wait))
    read_until(proc, "Starting service in Desktop VM")
    eventually(lambda: [c for c in labelled(docker_client, f"com.docker.compose.project={project}")
                        if c.status == "running"])  # it waits for the socket now
    restart_dockerd(sig=signal.SIGKILL, down_for=wait + ENGINE_BACK_WAIT + 4)
    try:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 1, out + err
        assert "cannot reach the Docker engine" in err, err  # asking it how the backend fares, it found none
        assert "The Docker engine does not answer: the next dockext command finishes removing it" in out, out
        assert (home / "extensions" / key / PENDING_FILE).is_file()  # left for the next command, not listed
        assert ls_json(home) == []  # which finishes the undo
        assert_nothing_left(home, docker_client, key, project)
        assert_no_project_objects(docker_client, project)
    finally:
        remove_all(home, docker_client, ref, project, proc)


def remove_all(home, docker_client, ext: str, project: str, proc: subprocess.Popen[str] | None = None) -> None:
    """A test's cleanup: its dockext command stopped if still running, the extension removed, and its named
    volumes too (they outlive rm, as in Docker Desktop)."""
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.communicate()
    run_dockext("rm", ext, home=home, check=False)
    for volume in docker_client.volumes.list(filters={"name": f"{project}_"}):
        volume.remove()


def server_container(docker_client, label: str):
    """The compose fixture's `server` container of the project ``label`` names."""
    [srv] = [c for c in labelled(docker_client, label) if c.labels["com.docker.compose.service"] == "server"]
    return srv


def mark_volume(docker_client, label: str) -> None:
    """A file in the compose fixture's named volume, which every version must find again."""
    server_container(docker_client, label).exec_run(
        ["python3", "-c", "open('/data/marker', 'w').write('kept')"], user="root")


def assert_one_version(home, docker_client, key: str, label: str, image: str, *, wait: bool) -> dict:
    """After an interrupted update: ``image`` alone is listed, its backend answers (at once, or with ``wait``
    within a while: after an engine restart), its two containers run it, the volume kept the marker, and no other
    version's files are left. Returns its record."""
    [row] = ls_json(home)
    assert row["image"] == image, row
    rec = record(home, key)
    sock = home / "gs" / rec["vm"]["gs_key"] / "compose.sock"
    if wait:
        status, _ = eventually(lambda: get_over_socket(sock, "/whoami") if sock.exists() else None)
    else:  # the update's rollback returns only once the old backend answers
        status, _ = get_over_socket(sock, "/whoami")
    assert status == 200
    ctrs = labelled(docker_client, label)
    assert sorted(c.labels["com.docker.compose.service"] for c in ctrs) == ["helper", "server"]
    assert {c.image.id for c in ctrs} == {rec["image_id"]}
    assert server_container(docker_client, label).exec_run(["cat", "/data/marker"]).output == b"kept"
    assert sorted(p.name for p in (home / "extensions").iterdir()) == [key]
    return rec


def test_an_update_dockerd_is_killed_under_ends_with_one_working_version(tmp_path, fixture_image, docker_client):
    """R5 for an update: dockerd is killed (SIGKILL) while the new version's `compose up` runs, and started again.
    The update fails and the old version comes back, or it completes; after the next command (`ls`, which
    finishes what the engine's absence cut short) one version is listed, its backend answers, the volume kept
    its data, and no object of the other version is left."""
    home = tmp_path / "home"
    v1 = fixture_image("compose", tag="1.1.0", repo_prefix=PREFIX)
    v2 = fixture_image("compose", tag="1.2.0", repo_prefix=PREFIX)
    key, project = f"{PREFIX}_compose", f"{PREFIX}_compose-desktop-extension"
    label = f"com.docker.compose.project={project}"
    run_dockext("install", "-f", v1, home=home)
    try:
        mark_volume(docker_client, label)
        proc = start(home, "update", "-f", v2, DOCKEXT_BACKEND_TIMEOUT="60")
        read_until(proc, "Starting service in Desktop VM")  # the new version's: the old one is down
        eventually(lambda: docker_client.networks.list(filters={"label": label}))
        restart_dockerd(sig=signal.SIGKILL)
        out, err = proc.communicate(timeout=180)
        print(f"update exited {proc.returncode} after dockerd's SIGKILL:\n{out[-600:]}\n{err[-600:]}")
        rec = assert_one_version(home, docker_client, key, label, v2 if proc.returncode == 0 else v1, wait=True)
        assert sorted(p.name for p in (home / "gs").iterdir()) == [rec["vm"]["gs_key"]]
        assert list((home / "staging").iterdir()) == []
    finally:
        remove_all(home, docker_client, key, project)
    assert_nothing_left(home, docker_client, key, project)
    assert_no_project_objects(docker_client, project)


def children(pid: int) -> list[tuple[int, str]]:
    """(pid, command name) of the processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            name, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
            if int(rest[1]) == pid:
                found.append((int(entry.name), name))
    return found


def test_an_install_whose_docker_compose_is_killed_mid_up_is_undone(tmp_path, fixture_image, docker_client):
    """R5: the `docker compose up` child of `dockext install` is killed (SIGKILL) once it has made the project's
    network: the install fails, saying so, and is undone at once (containers, network, the volume it made); an
    install again works."""
    home = tmp_path / "home"
    ref = fixture_image("compose", tag="1.1.0", repo_prefix=PREFIX)
    key, project = f"{PREFIX}_compose", f"{PREFIX}_compose-desktop-extension"
    proc = start(home, "install", "-f", ref)
    try:
        read_until(proc, "Starting service in Desktop VM")
        label = f"com.docker.compose.project={project}"
        eventually(lambda: docker_client.networks.list(filters={"label": label}), timeout=30)
        [(compose, _)] = [c for c in children(proc.pid) if c[1] == "docker-compose"]
        os.kill(compose, signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, out + err
        assert "Removing extension (install failed)" in out
        assert "starting the backend (docker compose up) failed" in err
        assert_nothing_left(home, docker_client, key, project)  # undone by the install itself, not left
        assert_no_project_objects(docker_client, project)
        assert ls_json(home) == []
        run_dockext("install", "-f", ref, home=home)  # the retry
        sock = home / "gs" / record(home, key)["vm"]["gs_key"] / "compose.sock"
        status, _ = get_over_socket(sock, "/whoami")
        assert status == 200
    finally:
        remove_all(home, docker_client, ref, project, proc)
    assert_nothing_left(home, docker_client, key, project)
    assert_no_project_objects(docker_client, project)


def test_an_update_whose_docker_compose_is_killed_mid_up_brings_the_old_version_back(tmp_path, fixture_image,
                                                                                     docker_client):
    """R5 for an update: the `docker compose up` of the new version is killed (SIGKILL) once it has made the
    project's network: the old version is back at once, its backend answering, its volume's data kept."""
    home = tmp_path / "home"
    v1 = fixture_image("compose", tag="1.1.0", repo_prefix=PREFIX)
    v2 = fixture_image("compose", tag="1.2.0", repo_prefix=PREFIX)
    key, project = f"{PREFIX}_compose", f"{PREFIX}_compose-desktop-extension"
    label = f"com.docker.compose.project={project}"
    run_dockext("install", "-f", v1, home=home)
    proc = None
    try:
        mark_volume(docker_client, label)
        proc = start(home, "update", "-f", v2)
        read_until(proc, "Starting service in Desktop VM")  # the new version's: the old one's network is gone
        eventually(lambda: docker_client.networks.list(filters={"label": label}), timeout=30)
        [(compose, _)] = [c for c in children(proc.pid) if c[1] == "docker-compose"]
        os.kill(compose, signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, out + err
        assert f"Update failed: restoring {v1}" in out
        assert f"failed, and {v1} was restored" in err and "docker compose up" in err
        assert_one_version(home, docker_client, key, label, v1, wait=False)
    finally:
        remove_all(home, docker_client, key, project, proc)
    assert_nothing_left(home, docker_client, key, project)
    assert_no_project_objects(docker_client, project)


def test_an_install_whose_compose_file_compose_rejects_is_undone_at_once(tmp_path, fixture_image, docker_client):
    """A compose file that compose rejects (a service with a key it does not know). It used to fail at `up`, and
    the undo's `down -f` failed with it (the undo goes by the project's labels). Since Compose's own reading is
    vetted before the backend starts (`compose config`), the install is refused then, with compose's reason:
    nothing was created, and nothing is left to retry at every later command."""
    home = tmp_path / "home"
    base = fixture_image("compose", tag="1.1.0", repo_prefix=PREFIX)
    ref = f"{PREFIX}/compose:6.6.6"
    build = tmp_path / "build"
    build.mkdir()
    text = (Path(__file__).parents[1] / "fixtures" / "extensions" / "compose" / "docker-compose.yaml").read_text()
    (build / "docker-compose.yaml").write_text(text.replace("    hostname: compose-api\n",
                                                            "    hostname: compose-api\n    not-a-compose-key: 1\n"))
    (build / "Dockerfile").write_text(f"FROM {base}\nCOPY docker-compose.yaml /\n")
    docker_client.images.build(path=str(build), tag=ref, rm=True)
    key, project = f"{PREFIX}_compose", f"{PREFIX}_compose-desktop-extension"
    try:
        out = run_dockext("install", "-f", ref, home=home, check=False)
        assert out.returncode == 1, out.stdout + out.stderr
        assert ("vm.composefile: Docker Compose cannot use it: services.server additional properties "
                "'not-a-compose-key' not allowed") in out.stderr, out.stderr
        assert "staging" not in out.stderr  # dockext's own path is not the author's business
        assert "Starting service" not in out.stdout and "next dockext command" not in out.stdout
        assert_nothing_left(home, docker_client, key, project)  # undone by the install itself
        assert not (home / "extensions").exists() or list((home / "extensions").iterdir()) == []
        assert ls_json(home) == []
    finally:
        run_dockext("rm", key, home=home, check=False)
        docker_client.images.remove(ref)


def test_with_live_restore_backends_keep_running_through_an_engine_restart(tmp_path, fixture_image, docker_client):
    """R12: dockerd with --live-restore (as many servers run it) restarts: the backend never stops (same
    container start, same process, answering all along through the same server, whose pooled connection is to a
    socket the engine never touched), and the dashboard's engine client reconnects without a reload."""
    home = tmp_path / "home"
    ref = fixture_image("stale-socket", repo_prefix=PREFIX)  # answers with its pid
    key, project = f"{PREFIX}_stale-socket", f"{PREFIX}_stale-socket-desktop-extension"
    original = dockerd_argv()
    restart_dockerd(argv=[*original, "--live-restore"])
    try:
        run_dockext("install", "-f", ref, home=home)
        server = start_server(home)
        try:
            session = Session(server)
            ui = session.open_ui(key)
            session.wait_backend(ui)
            [ctr] = labelled(docker_client, f"com.docker.compose.project={project}")
            started = ctr.attrs["State"]["StartedAt"]
            with session.page(ui, timeout=5) as c:
                pid = c.get(f"{ui.api}/vm/hello").json()["pid"]
                answers: list[object] = []
                done = threading.Event()

                def keep_asking() -> None:  # while the engine is away: the backend is dockext's to reach
                    with session.page(ui, timeout=5) as page:
                        while not done.is_set():
                            try:
                                r = page.get(f"{ui.api}/vm/hello")
                                answers.append(r.json().get("pid") if r.status_code == 200 else r.status_code)
                            except httpx.HTTPError as exc:
                                answers.append(repr(exc))
                            time.sleep(0.05)

                asker = threading.Thread(target=keep_asking)
                asker.start()
                try:
                    took = restart_dockerd()  # the same command line: live-restore on
                finally:
                    done.set()
                    asker.join(10)
                print(f"dockerd with live-restore answered again {took:.1f} s after SIGTERM; "
                      f"{len(answers)} calls meanwhile")
                assert len(answers) > 10 and set(answers) == {pid}, answers  # the same process, every time
            with session.dashboard() as dash:
                eventually(lambda: dash.get("/api/docker/containers").status_code == 200)
            ctr.reload()
            assert ctr.attrs["State"]["StartedAt"] == started and ctr.status == "running"
            [row] = ls_json(home)
            assert row["vm"] == "Running(1)"
        finally:
            server.stop()
            run_dockext("rm", ref, home=home, check=False)
    finally:
        restart_dockerd(argv=original)  # as it was, for the tests that follow
    assert_nothing_left(home, docker_client, key, project)
