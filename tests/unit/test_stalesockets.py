"""The sweep of backend sockets nothing listens on (server/stalesockets.py), on real unix sockets."""

from __future__ import annotations

import socket
from pathlib import Path

from dockext.server.stalesockets import StaleSockets


def listening(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.listen()
    return s


def stale(path: Path) -> None:
    """A socket file left behind: bound, never listening any more (as after kill -9 of its backend)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()


def test_a_socket_refusing_for_the_grace_period_is_removed_and_a_live_one_never(tmp_path):
    live, dead = tmp_path / "live.sock", tmp_path / "dead.sock"
    server = listening(live)
    stale(dead)
    sweeper = StaleSockets(grace=2.0, recheck=0.0)
    assert sweeper.sweep([live, dead], now=0.0) == []  # refusing, but not for long yet
    assert sweeper.sweep([live, dead], now=1.0) == []
    assert sweeper.sweep([live, dead], now=2.5) == [dead]
    assert not dead.exists() and live.exists()
    assert sweeper.sweep([live, dead], now=100.0) == []  # accepting, however long: kept
    server.close()


def test_a_new_socket_in_the_same_place_starts_the_wait_again(tmp_path):
    path = tmp_path / "b.sock"
    stale(path)
    sweeper = StaleSockets(grace=2.0)
    sweeper.sweep([path], now=0.0)
    path.unlink()
    stale(path)  # a new backend's socket (another inode), refusing for a moment
    assert sweeper.sweep([path], now=2.5) == []
    assert sweeper.sweep([path], now=5.0) == [path]


def test_files_that_are_not_sockets_and_sockets_no_longer_asked_for_are_left(tmp_path):
    plain = tmp_path / "b.sock"
    plain.write_text("not a socket")
    other = tmp_path / "c.sock"
    stale(other)
    sweeper = StaleSockets(grace=0.0)
    sweeper.sweep([plain, other], now=0.0)
    assert sweeper.sweep([plain], now=10.0) == []  # `other` is no longer an installed backend's socket
    assert plain.read_text() == "not a socket" and other.exists()


def test_a_socket_seen_accepting_is_probed_again_only_after_recheck(tmp_path):
    path = tmp_path / "b.sock"
    server = listening(path)
    sweeper = StaleSockets(grace=0.0, recheck=10.0)
    sweeper.sweep([path], now=0.0)
    server.close()  # its backend died; the file stays
    assert sweeper.sweep([path], now=5.0) == []  # not probed: seen accepting 5 s ago
    assert sweeper.sweep([path], now=10.0) == []  # probed: refusing from now on
    assert sweeper.sweep([path], now=10.1) == [path]
