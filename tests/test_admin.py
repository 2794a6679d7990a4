"""``python -m chathub.admin``: ``stats`` on both backends, ``backup`` of a live SQLite database
(the hub running, a client writing) that restores to the same history, PostgreSQL's pg_dump
pointer."""
from __future__ import annotations

import io
import json
import os
import sqlite3
import stat
import subprocess
import sys
import threading

import pytest
import pytest_twisted
from twisted.internet import defer

from chathub.admin import main
from chathub.config.storage import HistoryConfig
from chathub.events import Kind
from chathub.records import RoomRecord
from chathub.store import StorageError
from tests.store_fixtures import *  # noqa: F401,F403 (fixtures)
from tests.store_fixtures import EventMaker
from tests.support import REPO, server_config


async def _fill(store, make: EventMaker) -> None:
    """Three messages in #a, two in #b, one private, and a quit shown in both rooms."""
    events = make.chat("alice", "#a", 3, "a") + make.chat("alice", "#b", 2, "b") + [make.msg("alice", "bob", "hi")]
    await defer.gatherResults([store.append(e) for e in events], consumeErrors=True)
    await store.append(make.msg("alice", "", "bye", kind=Kind.QUIT), ["#a", "#b"])
    await store.create_account("alice", "$argon2id$x", created=1.0)
    await store.create_account("bob", "$argon2id$y", created=1.0)
    await store.save_room(RoomRecord(name="#a", founder="alice"))


@pytest_twisted.ensureDeferred
async def test_stats_count_what_is_kept(store_factory):
    store = await store_factory(HistoryConfig(max_per_target=2, max_age_days=1))
    make = EventMaker(start=1_700_000_000.0, step=3600.0)  # one event an hour
    await _fill(store, make)
    now = 1_700_000_000.0 + 86400 + 2.5 * 3600  # a day after the third event (a2)
    stats = store.stats(now)
    assert (stats.accounts, stats.persistent_rooms) == (2, 1)
    assert (stats.rooms_with_history, stats.private_conversations) == (2, 1)
    assert (stats.events, stats.history_rows) == (7, 8)  # the quit is one event, two rows
    assert (stats.oldest, stats.newest) == (1_700_000_000.0, 1_700_000_000.0 + 6 * 3600)
    # #a has a0 a1 a2 quit, #b b0 b1 quit: keeping 2 each leaves out 2 + 1
    assert stats.prunable_by_count == 3
    assert stats.prunable_by_age == 3  # a0, a1, a2 are over a day old
    assert stats.schema_version >= 3 and stats.size_bytes > 0
    assert stats.database == store.description
    # prune: a0 a1 a2 by age, then b0 by count (#a has only its quit left)
    assert await store.prune(now) == 4


def _config(tmp_path, extra: str = "") -> str:
    path = tmp_path / "chathub.toml"
    path.write_text(f'[server]\ndata_dir = "{tmp_path / "var"}"\n' + extra)
    return str(path)


def _run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


@pytest_twisted.ensureDeferred
async def test_stats_command_reads_the_servers_config(tmp_path, capsys):
    from chathub.store.sqlite import SqliteStore

    config = _config(tmp_path, "[history]\nmax_per_target = 2\n")
    # no database yet: one clear line, no traceback, and nothing made
    status, _ = _run("--config", config, "stats")
    assert status == 1
    assert "there is no SQLite database at" in capsys.readouterr().err
    assert not (tmp_path / "var").exists()
    store = SqliteStore(str(tmp_path / "var" / "chathub.sqlite3"), HistoryConfig(max_per_target=2))
    await store.open()
    await _fill(store, EventMaker())
    await store.close()
    status, text = _run("--config", config, "stats")
    assert status == 0
    shown = dict(line.split(":", 1) for line in text.splitlines())
    assert shown["accounts"].strip() == "2"
    assert shown["events"].strip() == "7"
    assert shown["history rows"].strip() == "8"
    assert shown["rooms with history"].strip() == "2"
    assert shown["oldest event"].strip() == "2023-11-14 22:13:20 UTC"
    assert "max_per_target = 2 (3 rows due now)" in shown["retention"]
    # --data-dir overrides the file's data_dir, as for twistd chathub
    moved = tmp_path / "elsewhere"
    (tmp_path / "var").rename(moved)
    status, text = _run("--config", config, "--data-dir", str(moved), "stats", "--json")
    assert status == 0
    figures = json.loads(text)
    assert (figures["events"], figures["private_conversations"], figures["persistent_rooms"]) == (7, 1, 1)
    assert figures["database"] == f"SQLite database {moved / 'chathub.sqlite3'}"


def test_postgres_backup_points_to_pg_dump(tmp_path, capsys):
    config = _config(
        tmp_path,
        '[storage]\nbackend = "postgres"\npostgres_dsn = "host=127.0.0.1 dbname=chat user=chat password=s3cret"\n',
    )
    status, _ = _run("--config", config, "backup", str(tmp_path / "copy"))
    assert status == 1
    err = capsys.readouterr().err
    assert "pg_dump --format=custom" in err and "dbname=chat" in err
    assert "s3cret" not in err


def test_backup_refuses_the_live_file_and_an_existing_one(tmp_path):
    from chathub.store.sqlite import SqliteStore

    live = tmp_path / "var" / "chathub.sqlite3"
    store = SqliteStore(str(live))
    store.preflight()
    for target, why in ((live, "is the live database itself"), (tmp_path, "is a directory")):
        with pytest.raises(StorageError, match=why):
            store.backup(str(target))
    (tmp_path / "old").write_text("x")
    with pytest.raises(StorageError, match="exists"):
        store.backup(str(tmp_path / "old"))
    assert store.backup(str(tmp_path / "old"), replace=True) > 0
    assert sqlite3.connect(tmp_path / "old").execute("SELECT version FROM schema_version").fetchone()[0] >= 3


def _rows(path) -> dict[str, list[tuple]]:
    """Each conversation's rows, in its order."""
    conn = sqlite3.connect(path)
    try:
        rows: dict[str, list[tuple]] = {}
        for conv, seq, msgid, body in conn.execute(
            "SELECT conv, conv_seq, msgid, body FROM conversation_events ORDER BY conv, conv_seq"
        ):
            rows.setdefault(conv, []).append((seq, msgid, body))
        return rows
    finally:
        conn.close()


def _login(client, nick):
    client.expect("Welcome")
    client.send(f"/nick {nick}")
    client.expect(rf"you are {nick}")


def test_backup_of_a_live_database_restores_the_same_history(tmp_path, twistd_server, line_client_factory):
    extra = '[limits]\nflood_exempt = ["127.0.0.0/8"]\n'
    server = twistd_server(server_config(tmp_path / "var", extra))
    alice, bob = line_client_factory(server.port()), line_client_factory(server.port())
    _login(alice, "alice")
    _login(bob, "bob")
    # an account holder's room is persistent: a server on the copy has it, with its history
    alice.send("/register pw-of-alice")
    alice.expect("account alice registered")
    for client in (alice, bob):
        client.send("/join #live")
        client.expect(r"in #live")
    alice.expect("bob joined #live")
    delivered: list[str] = []
    stop = threading.Event()
    writing = threading.Event()

    def write() -> None:
        # one message at a time, each delivered (so committed) before the next
        while not stop.is_set():
            text = f"message {len(delivered)}"
            alice.send(text)
            bob.expect(rf"<alice> {text}$")
            delivered.append(text)
            if len(delivered) == 50:
                writing.set()

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    assert writing.wait(30), "the writer never got going"
    before = len(delivered)
    copy = tmp_path / "backups" / "chathub.sqlite3"
    copy.parent.mkdir()
    config = str(server.config_path)
    done = subprocess.run(
        [sys.executable, "-m", "chathub.admin", "--config", config, "backup", str(copy)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    stop.set()
    writer.join(30)
    assert done.returncode == 0, done.stderr
    assert "backed up SQLite database" in done.stdout
    assert stat.S_IMODE(os.stat(copy).st_mode) == 0o600
    assert not os.path.exists(str(copy) + "-wal")
    assert sqlite3.connect(copy).execute("PRAGMA integrity_check").fetchone() == ("ok",)
    server.stop()
    live, saved = _rows(tmp_path / "var" / "chathub.sqlite3"), _rows(copy)
    # the copy is the history as of one commit: each conversation a prefix of the live one,
    # row for row, with everything delivered before the backup started
    assert set(saved) == set(live) == {"#live"}
    assert saved["#live"] == live["#live"][: len(saved["#live"])]
    texts = [json.loads(body)["text"] for _, _, body in saved["#live"] if json.loads(body)["kind"] == "message"]
    assert texts[:before] == [f"message {i}" for i in range(before)]
    assert len(texts) >= before

    # restored: a server on the copy serves that history
    restored_dir = tmp_path / "restored"
    restored_dir.mkdir(mode=0o700)
    os.replace(copy, restored_dir / "chathub.sqlite3")
    restored = twistd_server(server_config(restored_dir, "[history]\njoin_replay = 20\n"))
    carol = line_client_factory(restored.port())
    _login(carol, "carol")
    carol.send("/join #live")
    carol.expect(r"last 20 messages in #live")
    replay = [carol.readline().split("<alice> ")[1] for _ in range(20)]
    assert replay == texts[-20:]
    assert not restored.exceptions and not server.exceptions
