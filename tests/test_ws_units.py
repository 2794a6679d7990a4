"""Pure pieces of the WebSocket endpoint: origin rules, subprotocol choice, flood gate, event JSON."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from autobahn.websocket.types import ConnectionDeny
from twisted.internet.task import Clock

from chathub.config import Config, ConfigError
from chathub.events import EventIds, Kind, Source
from chathub.protocols.web.events import event_json
from chathub.protocols.flood import FloodControl, FloodGate
from chathub.protocols.web.websocket import choose_subprotocol, host_allowed, origin_allowed


@pytest.mark.parametrize(
    "origin, host, allowed, secure, ok",
    [
        ("", "chat.example.org", [], False, True),  # no Origin: not a browser
        ("http://chat.example.org", "chat.example.org", [], False, True),
        ("http://chat.example.org:8080", "chat.example.org:8080", [], False, True),
        ("http://chat.example.org:8080", "chat.example.org:8081", [], False, False),
        ("https://chat.example.org", "chat.example.org", [], False, False),  # scheme differs
        ("https://chat.example.org", "chat.example.org", [], True, True),
        ("http://evil.example.com", "chat.example.org", [], False, False),
        ("http://evil.example.com", "chat.example.org", ["*"], False, True),
        ("https://app.example.org", "chat.example.org", ["https://app.example.org"], False, True),
        ("http://app.example.org", "chat.example.org", ["https://app.example.org"], False, False),
        ("https://a.example.org", "chat.example.org", ["*.example.org"], False, True),
        ("https://example.org.evil.com", "chat.example.org", ["*.example.org"], False, False),
        ("null", "chat.example.org", [], False, False),
        ("not a url", "chat.example.org", [], False, False),
    ],
)
def test_origin_allowed(origin, host, allowed, secure, ok):
    assert origin_allowed(origin, host, allowed, secure, ["chat.example.org"]) is ok


@pytest.mark.parametrize(
    "host, ok",
    [
        ("127.0.0.1:8080", True),
        ("localhost", True),
        ("LocalHost.:8080", True),
        ("[::1]:8080", True),
        ("[::1]", True),
        ("", True),  # no Host header: not a browser
        ("evil.example:8080", False),
        ("127.0.0.1.evil.example", False),
        ("[::2]:8080", False),
        ("1", False),
    ],
)
def test_host_allowed_default_hostnames(host, ok):
    assert host_allowed(host, Config().websocket.hostnames) is ok


def test_host_allowed_globs_and_own_origin_needs_an_allowed_host():
    assert host_allowed("eu.chat.example.org", ["*.example.org"])
    assert not host_allowed("example.org.evil.com", ["*.example.org"])
    assert host_allowed("anything:1", ["*"])
    assert host_allowed("[::1]:80", ["::1"])
    # a rebound name: Origin and Host agree, but the name is not ours
    assert not origin_allowed("http://evil.example:8080", "evil.example:8080", [], False, ["localhost"])
    assert origin_allowed("http://localhost:8080", "localhost:8080", [], False, ["localhost"])


def test_subprotocol_choice_follows_the_client_order():
    assert choose_subprotocol(["binary.ircv3.net", "text.ircv3.net"]) == "binary.ircv3.net"
    assert choose_subprotocol(["text.ircv3.net", "binary.ircv3.net"]) == "text.ircv3.net"
    assert choose_subprotocol(["x", "chathub.v1", "text.ircv3.net"]) == "chathub.v1"
    assert choose_subprotocol([]) is None  # IRC as text, no header in the answer
    with pytest.raises(ConnectionDeny) as refused:
        choose_subprotocol(["mqtt"])
    assert refused.value.code == 400
    with pytest.raises(ConnectionDeny):
        choose_subprotocol([], supported=("chathub.v1",))


def test_flood_gate_delays_then_reports_a_flood():
    clock = Clock()
    handled, floods = [], []
    control = FloodControl(rate=2.0, burst=3, max_queued=4, clock=clock.seconds)
    owner = SimpleNamespace(
        handle_gated=handled.append, flooded=lambda: floods.append(1),
        pause_reading=lambda: None, resume_reading=lambda: None, when_delivered=lambda fn: fn(),
    )
    gate = FloodGate(control, clock, owner)
    for i in range(7):
        gate.submit(i)
    burst = len(handled)
    assert 3 <= burst < 7 and handled == list(range(burst))
    clock.advance(0.5)
    assert handled == list(range(burst + 1))
    clock.advance(10)
    assert handled == list(range(7)) and floods == []
    for i in range(20):
        gate.submit(i)
    assert floods == [1] and gate.stopped
    clock.advance(100)
    gate.submit("late")
    assert "late" not in handled


def test_event_json_for_every_kind():
    ids = EventIds()
    alice = Source(nick="alice", account="alice", protocol="irc", host="h")
    cases = {
        Kind.MESSAGE: dict(target="#r", text="hi"),
        Kind.ACTION: dict(target="#r", text="waves"),
        Kind.NOTICE: dict(target="bob", text="note"),
        Kind.TAGMSG: dict(target="#r", tags={"+typing": "paused"}),
        Kind.JOIN: dict(target="#r"),
        Kind.PART: dict(target="#r", text="bye"),
        Kind.QUIT: dict(text="gone"),
        Kind.KICK: dict(target="#r", text="spam", data={"nick": "bob"}),
        Kind.TOPIC: dict(target="#r", text="new topic"),
        Kind.NICK: dict(data={"new": "alice2"}),
        Kind.AWAY: dict(text="lunch"),
        Kind.MODE: dict(target="#r", data={"changes": [("+o", "bob"), ("+m", None)]}),
        Kind.INVITE: dict(target="#r", data={"nick": "bob"}),
        Kind.ACCOUNT: dict(data={"account": "alice"}),
        Kind.PRESENCE: dict(target="alice", data={"state": "offline"}),
        Kind.SETNAME: dict(text="Alice A."),
    }
    out = {}
    for kind, fields in cases.items():
        obj = event_json(ids.make(kind, alice, **fields))
        assert obj["id"] and obj["time"].endswith("Z")
        assert obj["from"] == {"nick": "alice", "account": "alice", "protocol": "irc"}
        json.dumps(obj)
        out[kind] = obj
    assert out[Kind.TAGMSG]["type"] == "typing" and out[Kind.TAGMSG]["state"] == "paused"
    assert out[Kind.KICK]["nick"] == "bob" and out[Kind.KICK]["room"] == "#r"
    assert out[Kind.NICK]["nick"] == "alice2"
    assert out[Kind.AWAY]["presence"] == "away"
    assert out[Kind.MODE]["changes"] == [["+o", "bob"], ["+m", None]]
    assert out[Kind.PRESENCE]["presence"] == "offline"
    assert event_json(ids.make(Kind.CHGHOST, alice, data={"user": "u", "host": "h"})) is None
    other = event_json(ids.make(Kind.TAGMSG, alice, target="#r", tags={"+draft/react": "x"}))
    assert other["type"] == "tagmsg" and other["tags"] == {"+draft/react": "x"}


def test_websocket_config_is_validated():
    with pytest.raises(ConfigError, match="websocket.max_frame_bytes"):
        Config().with_overrides(websocket={"max_frame_bytes": 0})
    with pytest.raises(ConfigError, match="websocket.allowed_origins"):
        Config().with_overrides(websocket={"allowed_origins": ["has space"]})
