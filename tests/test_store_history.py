"""Conversation keys, references and windows (pure functions), and the [storage]/[history] config."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chathub.config import ConfigError, parse_config
from chathub.events import Kind, Source, iso_time, parse_iso_time
from chathub.store.history import (
    centred_window,
    check_ref,
    conversation_for,
    conversations_of,
    peer_name,
    private_conversation,
    to_ms,
)
from tests.store_fixtures import EventMaker


def test_private_conversation_is_the_same_from_both_sides():
    assert private_conversation("Alice", "BOB") == private_conversation("bob", "alice")
    conv = private_conversation("Alice", "BOB")
    assert (conv.key, conv.peer_a, conv.peer_b, conv.private) == ("alice bob", "alice", "bob", True)
    assert conversation_for("alice", "Bob") == conv
    room = conversation_for("alice", "#Chat")
    assert (room.key, room.private) == ("#chat", False)


def test_conversations_of_events():
    make = EventMaker()
    assert [c.key for c in conversations_of(make.msg("Alice", "#Chat"))] == ["#chat"]
    assert [c.key for c in conversations_of(make.msg("Alice", "Bob"))] == ["alice bob"]
    assert conversations_of(make.msg("Alice", "Bob"), private=False) == []
    quit_ = make.msg("alice", "", kind=Kind.QUIT)
    assert [c.key for c in conversations_of(quit_, ["#a", "#B", "#a", "notaroom"])] == ["#a", "#b"]
    # a room target plus the same room in rooms= is one conversation
    assert [c.key for c in conversations_of(make.msg("a", "#x"), ["#X", "#y"])] == ["#x", "#y"]
    server = make.ids.make(Kind.NOTICE, Source(nick="", protocol="server"), "alice", "hi")
    assert conversations_of(server) == []


def test_peer_name():
    e = EventMaker().msg("Alice", "Bob")
    assert peer_name(e, "alice") == "Bob"
    assert peer_name(e, "bob") == "Alice"


def test_check_ref():
    assert check_ref(("msgid", "abc")) == ("msgid", "abc")
    assert check_ref(("timestamp", 5)) == ("timestamp", 5.0)
    for bad in [("msgid", ""), ("timestamp", "2020"), ("timestamp", True), ("id", "x"), "msgid=x", None, ()]:
        with pytest.raises(ValueError):
            check_ref(bad)


@given(st.floats(min_value=0, max_value=4_000_000_000, allow_nan=False))
def test_to_ms_agrees_with_server_time(t):
    """The millisecond a stored event falls in is the one its server-time tag shows."""
    shown = parse_iso_time(iso_time(t))
    assert to_ms(shown) == to_ms(t)


def test_centred_window():
    items = list(range(10))
    assert centred_window(items, 5, 1) == [5]
    assert centred_window(items, 5, 3) == [4, 5, 6]
    assert centred_window(items, 5, 4) == [4, 5, 6, 7]
    assert centred_window(items, 0, 3) == [0, 1, 2]
    assert centred_window(items, 9, 3) == [7, 8, 9]
    assert centred_window(items, 5, 20) == items
    assert centred_window(items, 5, 0) == []
    # a pivot between items 4 and 5
    assert centred_window(items, 5, 2, pivot_is_item=False) == [4, 5]
    assert centred_window(items, 5, 3, pivot_is_item=False) == [4, 5, 6]


def test_storage_config_defaults_and_validation():
    config = parse_config("")
    assert (config.storage.backend, config.storage.sqlite_synchronous) == ("sqlite", "normal")
    assert config.history.query_limit == 100
    bad = {
        '[storage]\nbackend = "mysql"': "storage.backend",
        '[storage]\nbackend = "postgres"': "storage.postgres_dsn",
        '[storage]\nsqlite_synchronous = "off"': "storage.sqlite_synchronous",
        "[storage]\npostgres_pool_size = 0": "storage.postgres_pool_size",
        "[history]\nmax_age_days = -1": "history.max_age_days",
        "[history]\nmax_per_target = -5": "history.max_per_target",
        "[history]\nprune_interval_seconds = 0": "history.prune_interval_seconds",
        "[history]\nquery_limit = 0": "history.query_limit",
        "[history]\nretention = 5": "history.retention",
    }
    for text, key in bad.items():
        with pytest.raises(ConfigError) as e:
            parse_config(text)
        assert key in str(e.value), text
    ok = parse_config('[storage]\nbackend = "postgres"\npostgres_dsn = "host=db"\n[history]\nmax_age_days = 30')
    assert ok.storage.postgres_dsn == "host=db" and ok.history.max_age_days == 30.0
