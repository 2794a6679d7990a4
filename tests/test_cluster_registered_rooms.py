"""Registered rooms across ``twistd chathub`` nodes (docs/cluster.md, "Registered rooms").

A room made by an account holder is registered: kept while empty, saved when it changes,
operator status back to its founder. Only the node that made it knew: every other node's
copy was a plain room, which ended there when its last member left while the maker's copy
lived on, so a user of another node then made a new room of the name (operator, the old
topic and modes gone) beside the registered one. Real nodes, one PostgreSQL database, one
redis-server (tests/cluster_support.py).
"""
from __future__ import annotations

import re

import psycopg

from tests.cluster_support import (  # noqa: F401 (fixtures)
    answer,
    cluster,
    first,
    irc_user,
    postgres_database,
    postgres_dsn,
    rounds,
    until,
)


def registered(client, nick: str) -> None:
    """``client`` registers an account of its nick (draft/account-registration)."""
    client.send("REGISTER * * correct-horse-battery\r\n")
    client.expect(rf" 900 {nick} ")


def kept_when_empty(client, nick: str, room: str) -> None:
    """Once ``client``'s node applied the last member's leave (NAMES lists nobody), the room
    still exists there (an empty registered room is not listed, but has modes)."""
    for _ in rounds(f"{room} emptied at {nick}'s node"):
        if not any(" 353 " in line for line in answer(client, f"NAMES {room}", r" 366 ")):
            break
    assert re.search(rf" 324 {nick} {room} ", answer(client, f"MODE {room}", r" (324|403) ")[-1])


def stored_topic(dsn: str, room: str) -> str:
    """The topic PostgreSQL holds for registered ``room`` ("" when it holds no such room)."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT topic FROM rooms WHERE name_folded = %s", (room,)).fetchone()
    return "" if row is None else str(row[0])


def test_a_room_an_account_holder_makes_is_registered_on_every_node(cluster, postgres_dsn):
    (a_line, a_irc), (b_line, b_irc) = cluster("a"), cluster("b")
    alice = irc_user(cluster, a_irc, "alice", join=False)
    registered(alice, "alice")
    alice.send("JOIN #kept\r\nTOPIC #kept :the kept topic\r\n")
    alice.expect(r" TOPIC #kept :the kept topic$")
    bob = irc_user(cluster, b_irc, "bob", join=False)
    registered(bob, "bob")
    until(bob, "LIST #kept", r" 323 ", r" 322 bob #kept 1 ")  # B applied the making JOIN
    alice.send("PART #kept\r\n")
    alice.expect(r" PART #kept")
    # B keeps its copy while empty, as A does: not ended there (it was, before)
    kept_when_empty(bob, "bob", "#kept")
    bob.send("JOIN #kept\r\n")
    joined = [bob.expect(r" 332 bob #kept "), bob.expect(r" 353 bob ")]
    assert joined[0].endswith(":the kept topic"), joined  # the room, not a new one
    assert re.search(r"#kept :?bob$", joined[1]), joined  # joining first gives no ops
    # the founder gets operator status back, and makes bob's account an operator of it
    until(alice, "NAMES #kept", r" 366 ", r" 353 alice = #kept :?bob$")  # A applied bob's join
    alice.send("JOIN #kept\r\n")
    assert re.search(r"#kept :?(@alice bob|bob @alice)$", alice.expect(r" 353 alice "))
    alice.send("MODE #kept +o bob\r\n")
    bob.expect(r" MODE #kept \+o bob$")
    # a change made on B is saved by B: its copy is registered too
    bob.send("TOPIC #kept :changed on B\r\n")
    alice.expect(r" TOPIC #kept :changed on B$")
    for _ in rounds("the topic changed on B stored"):
        if stored_topic(postgres_dsn, "#kept") == "changed on B":
            break
    bob.send("PART #kept\r\nJOIN #kept\r\n")  # bob's account got operator status for good
    assert re.search(r"#kept :?(@alice @bob|@bob @alice)$", bob.expect(r" 353 bob "))


def test_a_room_registered_when_its_guest_maker_logs_in_is_kept_on_every_node(cluster):
    (a_line, a_irc), (b_line, b_irc) = cluster("a"), cluster("b")
    carol = irc_user(cluster, a_irc, "carol", join=False)
    carol.send("JOIN #later\r\n")
    carol.expect(r" 366 carol #later ")
    bob = irc_user(cluster, b_irc, "bob", join=False)
    until(bob, "LIST #later", r" 323 ", r" 322 bob #later 1 ")
    registered(carol, "carol")  # carol made #later and operates it: it is registered to her
    carol.send("PART #later\r\n")
    carol.expect(r" PART #later")
    kept_when_empty(bob, "bob", "#later")
    bob.send("JOIN #later\r\n")
    assert re.search(r"#later :?bob$", bob.expect(r" 353 bob "))  # no ops: the room was kept
