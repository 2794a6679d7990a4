"""Attacks on a cluster node, watched from both nodes (issue 12 with issue 10's attacks): the
IRC, telnet and chathub.v1 streams of tests/test_fuzz.py, each sent by a fresh connection to
one of two real ``twistd chathub`` nodes (PostgreSQL, Redis), where honest users of every
protocol on both nodes share the room the streams aim at.

What an attacker says on one node becomes events that every node applies, so an event that
poisons the relay, the group's MessagePack form or another node's rendering would hurt users
who never met the attacker. For every example: the attacking session answers a probe or is
closed, neither node logs a traceback, and the honest users of both nodes still reach each
other in the room and privately (which also shows the relay of each node still delivers).
``CHATHUB_FUZZ_EXAMPLES`` sets the examples per protocol, as for tests/test_fuzz.py (two
thirds of it here: each example crosses two processes).
"""
from __future__ import annotations

import itertools
import os
import time

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.attacks import (
    IRC_ANSWER,
    IRC_COMMANDS,
    IRC_PROBE,
    ROOM,
    SESSION_REQUEST_TYPES,
    TELNET_ANSWER,
    TELNET_COMMANDS,
    TELNET_PROBE,
    RawWebSocket,
    answers_or_closes,
    attack_settings,
    irc_lines,
    irc_sign_on,
    json_session_messages,
    json_sign_on,
    send_and_probe,
    session_request,
    telnet_lines,
    telnet_sign_on,
)
from tests.cluster_support import answer, cluster, meet  # noqa: F401 (fixture)
from tests.store_fixtures import postgres_database, postgres_dsn  # noqa: F401 (fixtures)
from tests.support import LineClient

EXAMPLES = max(10, int(os.environ.get("CHATHUB_FUZZ_EXAMPLES", "60")) * 2 // 3)
#: how long an honest user waits for what another one said
WITHIN = 20.0


class Watchers:
    """Honest users in ``ROOM``: ``b_irc``, ``b_tel`` and ``B_WS`` (chathub.v1) on node b (the
    names the attack streams aim at), ``a_irc`` (its operator, who lets anyone set the topic)
    and ``a_tel`` on node a."""

    def __init__(self, cluster) -> None:
        (a_line, a_irc), (b_line, b_irc) = cluster("a"), cluster("b")
        self.cluster = cluster
        self.ports = {"a": {"line": a_line, "irc": a_irc}, "b": {"line": b_line, "irc": b_irc}}
        self.a_irc = self._irc(a_irc, "a_irc")
        self.b_irc = self._irc(b_irc, "b_irc")
        self.a_tel = self._telnet(a_line, "a_tel")
        self.b_tel = self._telnet(b_line, "b_tel")
        self.b_ws = RawWebSocket(cluster.http["b"])
        self.b_ws.expect_json(lambda m: m.get("type") == "hello")
        self.b_ws.send_json({"type": "login", "nick": "B_WS", "ref": 1})
        self.b_ws.expect_json(lambda m: m.get("type") == "welcome")
        self.b_ws.send_json({"type": "join", "room": ROOM})
        self.b_ws.expect_json(lambda m: m.get("type") == "room" and m.get("room") == ROOM)
        self.a_irc.say = lambda text: self.a_irc.send(f"PRIVMSG {ROOM} :{text}\r\n")
        self.b_irc.say = lambda text: self.b_irc.send(f"PRIVMSG {ROOM} :{text}\r\n")
        self.a_irc.send(f"MODE {ROOM} -t\r\n")  # the attackers may set the topic: it crosses too
        self.a_irc.expect(rf"MODE {ROOM} -t")
        meet(self.a_irc, [self.b_irc])  # each node past the other's joins
        meet(self.b_irc, [self.a_irc])
        self._round = itertools.count(1)

    def _irc(self, port: int, nick: str) -> LineClient:
        user = self.cluster.connect(port)
        user.send(f"NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n")
        user.expect(r" 001 ")
        user.send(f"JOIN {ROOM}\r\n")
        user.expect(rf" 366 {nick} {ROOM} ")
        return user

    def _telnet(self, port: int, nick: str) -> LineClient:
        user = self.cluster.connect(port)
        user.send(f"/nick {nick}\r\n/join {ROOM}\r\n")
        user.expect(rf"{ROOM}")
        return user

    def still_served(self) -> None:
        """A line of each node's IRC user and of node b's chathub.v1 user reaches every other
        watcher, and a private line crosses from node b's telnet user to node a's IRC user."""
        n = next(self._round)
        self.a_irc.say(f"a still here {n}")
        self.b_irc.expect(rf"PRIVMSG {ROOM} :a still here {n}$", WITHIN)
        self.b_tel.expect(rf"<a_irc> a still here {n}$", WITHIN)
        self.a_tel.expect(rf"<a_irc> a still here {n}$", WITHIN)
        self.b_ws.expect_json(lambda m: m.get("type") == "message" and m.get("text") == f"a still here {n}", WITHIN)
        self.b_irc.say(f"b still here {n}")
        self.a_irc.expect(rf"PRIVMSG {ROOM} :b still here {n}$", WITHIN)
        self.a_tel.expect(rf"<b_irc> b still here {n}$", WITHIN)
        self.b_ws.send_json({"type": "message", "target": ROOM, "text": f"ws still here {n}"})
        self.a_irc.expect(rf"PRIVMSG {ROOM} :ws still here {n}$", WITHIN)
        self.a_tel.expect(rf"<B_WS> ws still here {n}$", WITHIN)
        self.b_tel.send(f"/msg a_irc private {n}\r\n")
        self.a_irc.expect(rf"PRIVMSG a_irc :private {n}$", WITHIN)

    def agree(self, within: float = WITHIN) -> None:
        """Once the attackers are gone, both nodes list the watchers alone in the room (every
        attacker's QUIT reached both) and give it one topic and one set of modes: what the
        attackers did left the room's state the same everywhere."""
        watchers = {"@a_irc", "b_irc", "a_tel", "b_tel", "B_WS"}
        deadline = time.monotonic() + within
        while True:
            views = {nick: self._view(client, nick) for client, nick in ((self.a_irc, "a_irc"), (self.b_irc, "b_irc"))}
            if views["a_irc"] == views["b_irc"] and views["a_irc"][0] == watchers:
                return
            assert time.monotonic() < deadline, f"{ROOM} not alike on the two nodes (names, topic, modes): {views}"

    @staticmethod
    def _view(client: LineClient, nick: str) -> tuple:
        """The room as ``client``'s node shows it: names, topic, modes."""
        lines = answer(client, f"NAMES {ROOM}", rf" 366 {nick} ")
        names = {n for line in lines if f" 353 {nick} " in line for n in line.split(" :", 1)[1].split()}
        topic = answer(client, f"TOPIC {ROOM}", rf" 33[12] {nick} ")[-1].split(f" {ROOM} ", 1)[1]
        modes = answer(client, f"MODE {ROOM}", rf" 324 {nick} ")[-1].split(f" {ROOM} ", 1)[1]
        return names, topic, modes

    def no_tracebacks(self) -> None:
        """Neither node logged a traceback (each shown with the log lines around it)."""
        for name, node in self.cluster.nodes.items():
            log = list(node.log)
            at = next((i for i, line in enumerate(log) if "Traceback" in line or "Unhandled" in line), None)
            assert at is None, f"node {name} logged a traceback:\n" + "\n".join(log[max(0, at - 5) : at + 40])


def _attack(watchers: Watchers, session, examples: list, lines) -> None:
    """Hypothesis: ``session(node, nick, lines)`` signs an attacker on to either node (a nick
    of its own: the last attacker's may not be free yet on the other node), sends ``lines``
    and probes it; then the watchers must still be served and no node may have logged a
    traceback. Each of ``examples`` (lines) runs first, on the two nodes by turns: 40 random
    examples would leave most commands of the lists out."""
    attackers = itertools.count(1)

    def attack(node, lines):
        session(node, f"fz{next(attackers)}", lines)
        watchers.still_served()  # numbered after the attack's lines in the room: they crossed
        watchers.no_tracebacks()

    for n, each in enumerate(examples):
        attack = example(node="ab"[n % 2], lines=each)(attack)
    attack_settings(EXAMPLES)(given(node=st.sampled_from(["a", "b"]), lines=lines)(attack))()
    watchers.no_tracebacks()
    watchers.agree()


@pytest.mark.parametrize(
    "kind, sign_on, commands, lines, probe, answer",
    [
        ("irc", irc_sign_on, IRC_COMMANDS, irc_lines, IRC_PROBE, IRC_ANSWER),
        ("line", telnet_sign_on, TELNET_COMMANDS, telnet_lines, TELNET_PROBE, TELNET_ANSWER),
    ],
    ids=["irc", "telnet"],
)
def test_line_attacks_on_either_node_hurt_no_one_on_any_node(cluster, kind, sign_on, commands, lines, probe, answer):
    watchers = Watchers(cluster)

    def session(node: str, nick: str, sent: list[bytes]) -> None:
        client = LineClient(watchers.ports[node][kind])
        send_and_probe(client, client.send, [sign_on(nick), *sent], lambda: answers_or_closes(client, probe, answer))

    _attack(watchers, session, [[command + b"\r\n"] for command in commands], lines)


def test_json_attacks_on_either_node_hurt_no_one_on_any_node(cluster):
    watchers = Watchers(cluster)

    def session(node: str, nick: str, messages: list) -> None:
        client = RawWebSocket(cluster.http[node])
        send_and_probe(client, client.send_message, json_sign_on(nick) + messages, client.answers_or_closes)

    _attack(watchers, session, [[session_request(kind)] for kind in SESSION_REQUEST_TYPES], json_session_messages)


def test_the_watchers_see_an_attackers_room_lines_on_both_nodes(cluster):
    """The attacks reach the watchers: a line an attacker of node a says in the room (a CTCP
    ACTION with formatting, a bidi override and an astral character) is shown to the users of
    node b, each in its protocol's terms (so the tests above attack them)."""
    watchers = Watchers(cluster)
    attacker = LineClient(watchers.ports["a"]["irc"])
    attacker.send(irc_sign_on("fz") + f"PRIVMSG {ROOM} :\x01ACTION \x02b\x0f \u202e\U0001f600\x01\r\n".encode())
    watchers.b_irc.expect(rf":fz!\S+ PRIVMSG {ROOM} :\x01ACTION", WITHIN)
    watchers.b_tel.expect(r"fz", WITHIN)
    said = watchers.b_ws.expect_json(lambda m: (m.get("from") or {}).get("nick") == "fz" and "text" in m,
                                     WITHIN)
    assert said["type"] == "action" and "\u202e\U0001f600" in said["text"], said
    attacker.close()
    watchers.still_served()
    watchers.no_tracebacks()
