"""Several sessions per account ([auth] multiclient, Ergo's multiclient) over real sockets:
two IRC sessions and a chathub.v1 session of account alice are one user under one nick;
a message to the nick reaches all three, what one sends reaches the others, JOIN and read
markers follow, a session closing is silent, the last one quits once, and
max_sessions_per_account is refused in each protocol's terms."""
from __future__ import annotations

import base64

import pytest
import pytest_twisted

from chathub.config import Config
from chathub.events import EventIds, Kind, Source
from chathub.hub import errors
from chathub.hub.fanout import deliver
from chathub.hub.users import User
from tests.support import ALL_CAPS, HeldStore, HubServer, Recorder, RecorderWorld, irc_user, ws_config


async def account_server(tmp_path, **auth) -> HubServer:
    config = ws_config()
    if auth:
        config = config.with_overrides(auth=auth)
    server = await HubServer.stored(tmp_path, config, protocols=["http", "line", "irc"])
    await server.accounts.create_account("alice", "correct-horse")
    return server


async def alice_ws(server: HubServer):
    """A chathub.v1 login to account alice under nick alice: its welcome."""
    client = await server.ws_connect()
    await client.expect({"type": "hello"})
    client.send_json({"type": "login", "nick": "alice", "password": "correct-horse", "ref": "l"})
    return client, await client.expect(lambda m: m.get("type") in ("welcome", "error"))


def said(kind: str, nick: str, target: str, text: str = ""):
    """A chathub.v1 event of ``kind`` from ``nick`` to ``target`` (with ``text``)."""
    return lambda m: (m.get("type") == kind and m.get("from", {}).get("nick") == nick
                      and m.get("target") == target and m.get("text", "") == text)


async def quiet(client, text: str) -> None:
    """``client`` received no line containing ``text`` up to a round trip from now."""
    await client.roundtrip()
    assert not [t for t in client.texts if text in t], client.dump()


@pytest_twisted.ensureDeferred
async def test_three_sessions_of_one_account_are_one_user(tmp_path):
    server = await account_server(tmp_path)
    try:
        hub = server.hub
        bob = await server.irc("bob", rooms=["#room"])
        # irc1 has no echo-message: it gets what the others send as PRIVMSGs from itself
        irc1 = await irc_user(server, "alice", caps=["draft/read-marker"], password="correct-horse", rooms=["#room"])
        await bob.expect_re(r"^:alice!\S+ JOIN #room")
        irc2 = await irc_user(server, "alice", caps=[*ALL_CAPS, "draft/read-marker"], password="correct-horse")
        # the second session is shown the rooms its user is in, as a JOIN would
        assert [line for line in irc2.lines if line.command == "001"][0].params[0] == "alice"
        await irc2.expect_count(r" 366 alice #room ")
        assert [line.params[0] for line in irc2.lines if line.command == "JOIN"] == ["#room"], irc2.dump()
        web, welcome = await alice_ws(server)
        assert welcome["type"] == "welcome" and welcome["nick"] == "alice", welcome
        room = await web.expect({"type": "room", "room": "#room"})
        assert sorted(m["nick"] for m in room["members"]) == ["alice", "bob"]

        alice = hub.find_user("alice")
        assert alice is not None and len(alice.sessions) == 3
        assert [u.nick for u in hub.users.values()].count("alice") == 1
        await quiet(bob, "alice_")  # nobody became alice_, nobody saw a second JOIN
        assert len([t for t in bob.texts if " JOIN " in t and t.startswith(":alice!")]) == 1

        # a message to the nick reaches every session
        bob.send("PRIVMSG alice :hello all of you")
        await irc1.expect_re(r"^:bob!\S+ PRIVMSG alice :hello all of you$")
        await irc2.expect_re(r"PRIVMSG alice :hello all of you$")
        await web.expect(said("message", "bob", "alice", "hello all of you"))

        # one session says something in the room: the room and the other sessions see it,
        # the one without echo-message as a PRIVMSG from itself; the sender gets no copy
        irc1.send("PRIVMSG #room :from the first")
        await bob.expect_re(r"^:alice!\S+ PRIVMSG #room :from the first$")
        await irc2.expect_re(r":alice!\S+ PRIVMSG #room :from the first$")
        await web.expect(said("message", "alice", "#room", "from the first"))
        await quiet(irc1, "from the first")
        web.send_json({"type": "message", "target": "#room", "text": "from the web", "ref": "m"})
        await web.expect({"type": "ok", "ref": "m"})
        await irc1.expect_re(r"^:alice!\S+ PRIVMSG #room :from the web$")
        await irc2.expect_re(r":alice!\S+ PRIVMSG #room :from the web$")
        await bob.expect_re(r"PRIVMSG #room :from the web$")
        # a private message too: the other sessions see it sent to bob
        irc2.send("PRIVMSG bob :just between us")
        await bob.expect_re(r"^:alice!\S+ PRIVMSG bob :just between us$")
        await irc1.expect_re(r"^:alice!\S+ PRIVMSG bob :just between us$")
        await web.expect(said("message", "alice", "bob", "just between us"))

        # a JOIN of one session shows on the others; the user is one member of the room
        irc2.send("JOIN #second")
        await irc1.expect_re(r"^:alice!\S+ JOIN #second")
        await web.expect(lambda m: m.get("type") == "join" and m["from"]["nick"] == "alice" and m["room"] == "#second")
        second = await web.expect({"type": "room", "room": "#second"})  # as a join's own answer
        assert [m["nick"] for m in second["members"]] == ["alice"]
        assert list(hub.find_room("#second").members) == ["alice"]
        # a nick change of one session is every session's: the others' replies carry it
        irc1.send("NICK alice2")
        await irc2.expect_re(r"^(@\S+ )?:alice!\S+ NICK :?alice2$")
        await web.expect(lambda m: m.get("type") == "nick" and m["from"]["nick"] == "alice" and m["nick"] == "alice2")
        whois = await irc2.roundtrip("WHOIS bob")
        assert {line.params[0] for line in whois if line.command.isdigit()} == {"alice2"}, irc2.dump()
        irc2.send("NICK alice")
        await irc1.expect_re(r"^:alice2!\S+ NICK :?alice$")
        # and a PART: the user leaves the room once, seen by every session
        irc1.send("PART #second :moving on")
        await irc2.expect_re(r":alice!\S+ PART #second :moving on$")
        await web.expect(lambda m: m.get("type") == "part" and m["room"] == "#second")
        irc1.send("JOIN #second")
        await irc2.expect_re(r":alice!\S+ JOIN #second")
        # read markers follow the account to its other sessions with the capability
        irc2.send("MARKREAD #room timestamp=2026-01-02T03:04:05.000Z")
        await irc1.expect_re(r"^:\S+ MARKREAD #room timestamp=2026-01-02T03:04:05.000Z$")
        await web.expect({"type": "read_marker", "target": "#room", "time": "2026-01-02T03:04:05.000Z"})
        web.send_json({"type": "markread", "target": "bob", "time": "2026-01-02T03:04:06.000Z", "ref": "r"})
        answer = await web.expect({"type": "read_marker", "ref": "r"})
        assert answer["target"] == "bob" and answer["time"] == "2026-01-02T03:04:06.000Z"
        await irc1.expect_re(r"^:\S+ MARKREAD bob timestamp=2026-01-02T03:04:06.000Z$")
        await irc2.expect_re(r"MARKREAD bob timestamp=2026-01-02T03:04:06.000Z$")
        web.send_json({"type": "markread", "target": "bob", "time": "2026-01-02T00:00:00.000Z", "ref": "back"})
        assert (await web.expect({"type": "read_marker", "ref": "back"}))["time"] == "2026-01-02T03:04:06.000Z"
        web.send_json({"type": "markread", "target": "bob", "time": "yesterday", "ref": "bad"})
        assert (await web.expect({"type": "error", "ref": "bad"}))["code"] == "invalid_field"

        # a session closing is seen by nobody; the user keeps its nick and rooms
        irc2.send("QUIT :phone off")
        await irc2.closed
        web.send_json({"type": "quit"})
        await web.wait_closed()
        await quiet(bob, "QUIT")
        await quiet(irc1, "QUIT")
        assert hub.find_user("alice") is alice and alice.sessions == (alice.participant,)
        assert set(alice.rooms) == {"#room", "#second"}
        bob.send("PRIVMSG alice :still there?")
        await irc1.expect_re(r"PRIVMSG alice :still there\?$")

        # the last one: one QUIT, and the user is gone
        irc1.send("QUIT :bye")
        await bob.expect_re(r"^:alice!\S+ QUIT :bye$")
        await bob.roundtrip()
        assert len([t for t in bob.texts if " QUIT " in t]) == 1, bob.dump()
        assert hub.find_user("alice") is None and list(hub.find_room("#room").members) == ["bob"]
    finally:
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_a_telnet_login_joins_the_user_and_the_limit_is_refused(tmp_path):
    server = await account_server(tmp_path, max_sessions_per_account=2)
    try:
        irc = await irc_user(server, "alice", caps=[], password="correct-horse", rooms=["#room"])
        tel = await server.connect("line")
        tel.send("/nick alice correct-horse")
        await tel.expect_re(r"^\* you are alice, logged in to account alice, one of 2 sessions")
        await tel.expect_re(r"^\* you are in #room; #room is your current room$")
        tel.send("hello from telnet")
        await irc.expect_re(r"^:alice!\S+ PRIVMSG #room :hello from telnet$")
        # a private message of the IRC session reads as the telnet user's own; bob's to both
        bob = await server.irc("bob")
        irc.send("PRIVMSG bob :psst")
        await bob.expect_re(r"^:alice!\S+ PRIVMSG bob :psst$")
        await tel.expect_re(r"^-> bob: psst$")
        bob.send("PRIVMSG alice :yes?")
        await tel.expect_re(r"^<- bob: yes\?$")
        await irc.expect_re(r"^:bob!\S+ PRIVMSG alice :yes\?$")

        # a third session is one too many, in each protocol's terms
        third = await server.connect("irc")
        third.send("CAP LS 302", "CAP REQ :sasl", "AUTHENTICATE PLAIN")
        await third.expect("AUTHENTICATE")
        third.send("AUTHENTICATE " + base64.b64encode(b"alice\0alice\0correct-horse").decode(),
                   "NICK alice", "USER alice 0 * :a", "CAP END")
        fail = await third.expect("FAIL")
        assert fail.params[:3] == ["NICK", "TOO_MANY_SESSIONS", "alice"] and "at most 2" in fail.params[-1]
        await third.closed
        web, refusal = await alice_ws(server)
        assert refusal["type"] == "error" and refusal["code"] == "too_many_sessions", refusal
        tel2 = await server.connect("line")
        tel2.send("/nick alice correct-horse")
        await tel2.expect_re(r"^! alice: Too many sessions of this account are connected \(at most 2\)$")
        assert len(server.hub.find_user("alice").sessions) == 2
    finally:
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_multiclient_off_refuses_a_second_login(tmp_path):
    server = await account_server(tmp_path, multiclient=False)
    try:
        await irc_user(server, "alice", caps=[], password="correct-horse")
        web, refusal = await alice_ws(server)
        assert refusal["type"] == "error" and refusal["code"] == "nick_in_use", refusal
    finally:
        await server.stop()


class _Session:
    """A participant that counts its encodes; ``key`` is its format."""

    protocol = "test"
    echo_own = False

    def __init__(self, key: str, counter: list) -> None:
        self.format_key = key
        self.counter = counter
        self.sent: list[bytes] = []

    def encode(self, event) -> bytes:
        self.counter.append(self.format_key)
        return event.text.encode() + b";"

    def send(self, data: bytes) -> None:
        self.sent.append(data)


def test_fanout_encodes_once_per_format_across_sessions():
    """Sessions of a several-session user share the one encoding per format with everyone,
    and the acting session is skipped while the actor's others get the event."""
    encodes: list = []
    a1, a2, a3 = _Session("irc", encodes), _Session("json", encodes), _Session("irc", encodes)
    alice = User(a1, account="alice")
    alice.attach(a2)
    alice.attach(a3)
    bob = User(_Session("irc", encodes))
    event = EventIds().make(Kind.MESSAGE, Source(nick="bob", protocol="test"), "#r", "hi")
    deliver((event,), (bob, alice), several=True)
    assert sorted(encodes) == ["irc", "json"]
    assert a1.sent == a2.sent == a3.sent == bob.participant.sent == [b"hi;"]

    alice.act_as(a2)  # the JSON session acts: it is skipped, the others get it
    assert alice.participant is a2 and set(alice.others) == {a1, a3}
    deliver((event,), (bob, alice), alice, acting=a2, several=True)
    assert a2.sent == [b"hi;"] and a1.sent == a3.sent == bob.participant.sent == [b"hi;", b"hi;"]
    assert alice.detach(a2) and alice.participant is a1 and alice.detach(a3) and not alice.detach(a1)



def test_a_message_reaches_the_senders_other_session_though_it_acts_before_the_commit():
    """The session that sent a stored message is the one left out when it is shown (it
    renders its own), even when another session of the account has acted meanwhile: found
    at the commit instead, the other session lost the message and the sender got it back."""
    store = HeldStore()
    world = RecorderWorld(Config().with_overrides(auth={"multiclient": True}, history={"enabled": True}), store=store)
    hub = world.hub
    bob = world.connect("bob")
    alice = world.connect("alice", account="alice")
    laptop = alice.participant
    phone = Recorder(world.codec, "b")
    assert hub.sign_on(User(phone, account="alice"), "alice") is alice
    alice.act_as(laptop)
    hub.send(alice, "bob", "from the laptop")
    alice.act_as(phone)  # the phone sends a command before the message is committed
    world.clear()
    phone.clear()
    store.commit()
    assert [e.text for e in phone.events] == ["from the laptop"]
    assert laptop.events == []  # it showed its own already
    assert [e.text for e in bob.participant.events] == ["from the laptop"]


def test_hub_attaches_only_the_same_account_and_detaches_silently():
    """At the hub: a login of the same account to its user's nick is one more session; a
    guest or another account asking for that nick is refused as before; closing sessions
    is silent until the last, and closing one twice changes nothing."""
    world = RecorderWorld()
    hub = world.hub
    alice = world.connect("alice", account="alice")
    bob = world.connect("bob")
    hub.join(alice, "#r")
    hub.join(bob, "#r")
    for account in (None, "mallory"):
        with pytest.raises(errors.NickInUse):
            hub.sign_on(User(Recorder(world.codec), account=account), "alice")
    phone = Recorder(world.codec, "b")
    assert hub.sign_on(User(phone, account="ALICE"), "Alice") is alice  # any case
    assert alice.sessions == (alice.participant, phone) and hub.may_attach("alice")
    assert hub.fanout.several == 1  # the fan-out walks sessions while such a user exists
    world.clear()
    phone.clear()
    hub.send(bob, "#r", "hi")
    assert [e.text for e in phone.events] == [e.text for e in alice.participant.events] == ["hi"]

    first = alice.participant
    assert hub.quit(alice, "gone", first) is None and alice.sessions == (phone,)
    assert hub.fanout.several == 0
    assert hub.quit(alice, "gone", first) is None and hub.find_user("alice") is alice
    assert not bob.participant.events
    event = hub.quit(alice, "bye", phone)
    assert event is not None and [e.kind for e in bob.participant.events] == ["quit"]
    assert hub.find_user("alice") is None and not hub.may_attach("alice")
