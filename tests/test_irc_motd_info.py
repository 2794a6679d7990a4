"""MOTD (read at start-up, re-read in a thread only on request) and INFO's description line."""
from __future__ import annotations

import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st

from chathub.protocols.irc.wire import MAX_BODY, NickTemplate, SlotTemplate, serialise, slot
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


_slot_value = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FFF, exclude_characters=" :%"), min_size=1,
                      max_size=200)


@given(
    nick=_slot_value,
    mask=_slot_value,
    count=st.integers(min_value=0, max_value=10**12),
    motd=st.lists(st.text(st.characters(min_codepoint=0, max_codepoint=0x2FFF, exclude_characters="\r\n"),
                          max_size=520), max_size=3),
)
@settings(max_examples=300, deadline=None)
def test_a_slot_template_is_what_serialise_makes(nick, mask, count, motd):
    """A filled ``SlotTemplate`` is byte for byte what ``serialise`` makes of its lines
    with the values in place (a ``%`` of the text stays one); it declines exactly when a
    line would be cut, or its text holds a NUL of its own (a MOTD's)."""
    lines = [
        ("001", [slot("nick"), f"Welcome to 100% of it {slot('mask')}"]),
        ("252", [slot("nick"), slot("count"), "operator(s) online"]),
        ("005", [slot("nick"), "A=1", "B", "are supported by this server"]),
        *(("372", [slot("nick"), f"- {line}"]) for line in motd),
    ]
    values = {"nick": nick, "mask": mask, "count": str(count)}
    filled = SlotTemplate("irc.example", lines).fill({k.encode(): v.encode("utf-8") for k, v in values.items()})
    expected = []
    for command, params in lines:
        params = [p.replace("\x00nick\x00", nick).replace("\x00mask\x00", mask).replace("\x00count\x00", str(count))
                  for p in params]
        expected.append(serialise(None, "irc.example", command, params))
    would_cut = any(len(line) >= MAX_BODY for line in expected)
    if filled is None:
        assert would_cut or any("\x00" in line for line in motd)
    else:
        assert filled == b"".join(expected)


def test_a_labelled_registration_gets_the_same_burst_line_by_line():
    """The welcome filled in one piece and the one made line by line (a labelled USER:
    its lines go in a labeled-response batch) are the same lines."""
    world = irc_world()
    plain = world.irc_conn()
    plain.send("NICK bob", "USER u 0 * :Real Name")
    plain_lines = [(m.command, m.params) for m in plain.lines()]
    labelled = world.irc_conn()
    labelled.send("CAP LS 302", "CAP REQ :labeled-response batch message-tags", "CAP END", "NICK amy")
    labelled.lines()
    labelled.send("@label=reg USER u 0 * :Real Name")
    lines = labelled.lines()
    assert lines[0].command == "BATCH" and lines[0].tags == {"label": "reg"} and lines[-1].command == "BATCH"
    inside = [(m.command, m.params) for m in lines[1:-1]]
    assert [c for c, _ in inside] == [c for c, _ in plain_lines]
    assert [p[0] for _, p in inside] == ["amy"] * len(inside)
    assert inside[0][1][-1] == plain_lines[0][1][-1].replace("bob!", "amy!")
    counted = {"251", "255", "265", "266"}  # one user more for amy
    same = [(c, p[1:]) for c, p in inside if c not in counted and c != "001"]
    assert same == [(c, p[1:]) for c, p in plain_lines if c not in counted and c != "001"]
    assert ("255", ["amy", "I have 2 clients and 0 servers"]) in inside
    assert ("255", ["bob", "I have 1 clients and 0 servers"]) in plain_lines
