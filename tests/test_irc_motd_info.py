"""MOTD (read at start-up, re-read in a thread only on request) and INFO's description line."""
from __future__ import annotations

import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st

from chathub.protocols.irc.wire import NickTemplate, serialise
from tests.support import LOOPBACK, OPER_HASH, OPER_PASSWORD, irc_world


def motd_world(tmp_path, monkeypatch, name):
    data = tmp_path / "data"
    data.mkdir()
    (data / "motd.txt").write_text("from the data dir\nsecond line\n")
    # a file of the same name in the working directory must not be picked
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "motd.txt").write_text("from the working directory\n")
    monkeypatch.chdir(cwd)
    return irc_world(server={"data_dir": str(data)}, flood_exempt=LOOPBACK, motd_file=name), data


def motd_text(conn) -> list[str]:
    conn.send("MOTD")
    return [m.params[-1] for m in conn.lines() if m.command == "372"]


def test_motd_is_relative_to_data_dir_and_read_once(tmp_path, monkeypatch):
    world, data = motd_world(tmp_path, monkeypatch, "motd.txt")
    c = world.irc_conn("amy")
    assert motd_text(c) == ["- from the data dir", "- second line"]
    # served from memory: changing the file does not change the MOTD until it is re-read
    (data / "motd.txt").write_text("changed\n")
    assert motd_text(c) == ["- from the data dir", "- second line"]


def test_motd_absolute_path_and_missing_file(tmp_path, monkeypatch):
    absolute = tmp_path / "elsewhere.txt"
    absolute.write_text("absolute\n")
    world, _ = motd_world(tmp_path, monkeypatch, str(absolute))
    c = world.irc_conn("amy")
    assert motd_text(c) == ["- absolute"]
    (tmp_path / "other").mkdir()
    world, _ = motd_world(tmp_path / "other", monkeypatch, "absent.txt")
    c = world.irc_conn("bob")
    c.send("MOTD")
    assert "422" in [m.command for m in c.lines()]


@pytest_twisted.inlineCallbacks
def test_motd_reload_reads_in_a_thread(tmp_path, monkeypatch):
    world, data = motd_world(tmp_path, monkeypatch, "motd.txt")
    (data / "motd.txt").write_text("new text\n")
    lines = yield world.irc_conn_factory.server.motd.reload()
    assert lines == ["new text"]
    assert motd_text(world.irc_conn("amy")) == ["- new text"]


def test_info_includes_the_server_description():
    world = irc_world(server={"description": "Our little chat"})
    c = world.irc_conn("amy")
    c.send("INFO")
    info = [m.params[-1] for m in c.lines() if m.command == "371"]
    assert "Our little chat" in info


@pytest_twisted.inlineCallbacks
def test_rehash_rereads_the_motd_for_operators_only(tmp_path, monkeypatch):
    from twisted.internet import defer, reactor

    data = tmp_path / "data"
    data.mkdir()
    (data / "motd.txt").write_text("old\n")
    world = irc_world(server={"data_dir": str(data)}, flood_exempt=LOOPBACK, motd_file="motd.txt",
                      operators=[{"name": "boss", "password_hash": OPER_HASH}])
    c = world.irc_conn("amy")
    (data / "motd.txt").write_text("new\n")
    c.send("REHASH")
    assert "481" in [m.command for m in c.lines()]
    assert motd_text(c) == ["- old"]

    def wait_for(command):
        # the answer is written once the thread's work is back on the reactor
        d = defer.Deferred()
        seen = []
        write = c.transport.write

        def watch(data):
            write(data)
            if not seen and f" {command} ".encode() in data:
                seen.append(data)
                # not from inside the session's write: carry on once it has finished
                reactor.callLater(0, d.callback, None)

        c.transport.write = watch
        return d.addTimeout(10, reactor).addBoth(lambda r: setattr(c.transport, "write", write) or r)

    c.send(f"OPER boss {OPER_PASSWORD}")
    yield wait_for("381")
    c.send("REHASH")
    yield wait_for("382")
    assert motd_text(c) == ["- new"]


def welcomed(world, nick: str) -> list:
    """``burst`` of a new client that registers as ``nick``."""
    c = world.irc_conn()
    c.send(f"NICK {nick}", "USER u 0 * :Real")
    return burst(c)


def burst(conn) -> list:
    """The welcome lines after 001 up to the end of the MOTD, as (command, params)."""
    lines = [m for m in conn.lines() if m.command in ("002", "003", "004", "005", "375", "372", "376", "422")]
    return [(m.command, m.params) for m in lines]


@pytest_twisted.inlineCallbacks
def test_the_cached_welcome_burst_follows_a_reload(tmp_path, monkeypatch):
    """002-005 and the MOTD are serialised once and each client gets them with its nick;
    a re-read MOTD, and a reloaded config, are in the next client's welcome."""
    world, data = motd_world(tmp_path, monkeypatch, "motd.txt")
    server = world.irc_conn_factory.server
    amy = welcomed(world, "amy")
    cached = server.renderings["welcome"][2]
    bob = welcomed(world, "bob")
    assert server.renderings["welcome"][2] is cached  # rendered once
    assert [(c, p[1:]) for c, p in amy] == [(c, p[1:]) for c, p in bob]
    assert {p[0] for _, p in amy} == {"amy"} and {p[0] for _, p in bob} == {"bob"}
    assert [p[-1] for c, p in bob if c == "372"] == ["- from the data dir", "- second line"]
    assert f"NETWORK={world.config.server.network}" in [t for c, p in bob if c == "005" for t in p]

    (data / "motd.txt").write_text("new text\n")
    yield server.motd.reload()  # REHASH without a config file to re-read
    carol = welcomed(world, "carol")
    assert [p[-1] for c, p in carol if c == "372"] == ["- new text"]
    assert [x for x in carol if x[0] != "372"] == [(c, ["carol", *p[1:]]) for c, p in bob if c != "372"]

    (data / "motd.txt").write_text("newer\n")
    yield server.reconfigure(world.config.with_overrides(server={"network": "Elsewhere"}))  # SIGHUP, REHASH
    dave = welcomed(world, "dave")
    assert [p[-1] for c, p in dave if c == "372"] == ["- newer"]
    tokens = [t for c, p in dave if c == "005" for t in p]
    assert "NETWORK=Elsewhere" in tokens and f"NETWORK={world.config.server.network}" not in tokens
    # the MOTD command gives the same lines as the welcome
    c = world.irc_conn("erin")
    c.lines()
    c.send("MOTD")
    assert burst(c) == [(cmd, ["erin", *p[1:]]) for cmd, p in dave if cmd in ("375", "372", "376")]


@given(
    nick=st.text(st.characters(min_codepoint=33, max_codepoint=0x2FFF, exclude_characters=" :"), min_size=1,
                 max_size=40),
    motd=st.lists(st.text(st.characters(min_codepoint=32, max_codepoint=0x2FFF), max_size=520), max_size=3),
)
@settings(max_examples=200, deadline=None)
def test_a_nick_template_is_what_serialise_makes(nick, motd):
    """Every line of a ``NickTemplate`` for any nick is byte for byte what ``serialise``
    makes of it, long lines cut where the nick's length puts the cut."""
    lines = [("372", [f"- {line}"]) for line in motd] + [("005", ["A=1", "B", "are supported by this server"])]
    for message in NickTemplate("irc.example", lines).for_nick(nick):
        assert message.to_bytes() == serialise(None, "irc.example", message.command, message.params)
        assert message.params[0] == nick
