"""Signed dashboard sessions (server/sessions.py): what a restart keeps, and what it refuses."""

from __future__ import annotations

import json
import multiprocessing
import stat
from pathlib import Path

import pytest

from dockext.errors import StateError
from dockext.server.sessions import FILE, MAX_AGE, REVOKED_FILE, Sessions


def test_a_session_issued_by_one_server_is_valid_for_the_next_on_the_same_home(tmp_path):
    value = Sessions.for_home(tmp_path).issue()
    assert stat.S_IMODE((tmp_path / FILE).stat().st_mode) == 0o600
    assert Sessions.for_home(tmp_path).valid(value)  # a new server, the same secret file
    other = tmp_path / "other"  # another dockext home: another secret
    other.mkdir()
    assert not Sessions.for_home(other).valid(value)


def test_tampered_expired_and_malformed_values_are_refused(tmp_path):
    sessions = Sessions.for_home(tmp_path)
    value = sessions.issue(now=1_000_000)
    assert sessions.valid(value, now=1_000_000 + MAX_AGE - 1)
    assert not sessions.valid(value, now=1_000_000 + MAX_AGE)  # expired
    expiry, nonce, mac = value.split(".")
    assert not sessions.valid(f"{int(expiry) + 86400}.{nonce}.{mac}", now=1_000_000)  # a longer life, same mac
    flipped = mac[:-1] + ("1" if mac.endswith("0") else "0")
    assert not sessions.valid(f"{expiry}.{nonce}.{flipped}", now=1_000_000)
    for junk in ("", "x", "..", "1.2", "abc.def.ghi", f"{expiry}..{mac}"):
        assert not sessions.valid(junk, now=1_000_000), junk


def test_deleting_the_secret_logs_everyone_out(tmp_path):
    value = Sessions.for_home(tmp_path).issue()
    (tmp_path / FILE).unlink()
    assert not Sessions.for_home(tmp_path).valid(value)


def test_an_unreadable_secret_is_a_clear_error(tmp_path):
    (tmp_path / FILE).write_text("not hex\n")
    with pytest.raises(StateError, match="Delete it"):
        Sessions.for_home(tmp_path)


def test_a_planted_value_with_any_characters_is_refused_without_an_error(tmp_path):
    sessions = Sessions.for_home(tmp_path)
    for junk in ("1.a.é", "é", "1.\udcff.x", "9" * 5000 + ".a.b"):
        assert not sessions.valid(junk)


def test_a_revoked_session_is_refused_by_every_server_on_the_home_and_the_others_stay(tmp_path):
    sessions = Sessions.for_home(tmp_path)
    mine, other = sessions.issue(), sessions.issue()
    assert sessions.revoke(mine)
    assert not sessions.valid(mine) and sessions.valid(other)
    assert stat.S_IMODE((tmp_path / REVOKED_FILE).stat().st_mode) == 0o600
    later = Sessions.for_home(tmp_path)  # a restart, or another server on the same home
    assert not later.valid(mine) and later.valid(other)
    assert later.revoke(other) and not sessions.valid(other)  # the first server sees the second's logout
    assert not sessions.revoke("1.x.y")  # not a session: nothing kept


def test_revocations_are_kept_only_until_the_session_would_have_expired(tmp_path):
    sessions = Sessions.for_home(tmp_path)
    old = sessions.issue(now=1_000)  # expired long ago
    current = sessions.issue()
    revoked_then = {"schema": 1, "revoked": {old.split(".")[1]: 1_000 + MAX_AGE}}  # logged out back then
    (tmp_path / REVOKED_FILE).write_text(json.dumps(revoked_then))
    assert sessions.revoke(current)
    assert list(json.loads((tmp_path / REVOKED_FILE).read_text())["revoked"]) == [current.split(".")[1]]


def _log_out_many(home: str, sessions: list[str], start) -> None:  # in a process of its own, as a second server
    server = Sessions.for_home(Path(home))
    start.wait()
    for value in sessions:
        assert server.revoke(value)


def test_servers_logging_out_at_the_same_moment_keep_every_logout(tmp_path):
    """Four servers on one home each log out 25 sessions at once: every one of the 100 stays refused (a
    read-modify-write of the revocations without a lock lets one server's write undo another's)."""
    issuer = Sessions.for_home(tmp_path)
    batches = [[issuer.issue() for _ in range(25)] for _ in range(4)]
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_log_out_many, args=(str(tmp_path), batch, start)) for batch in batches]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    fresh = Sessions.for_home(tmp_path)
    still_valid = [v for batch in batches for v in batch if fresh.valid(v)]
    assert still_valid == []
    assert len(json.loads((tmp_path / REVOKED_FILE).read_text())["revoked"]) == 100
