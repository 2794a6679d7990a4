"""IRC metadata (``draft/metadata-3``) across two real cluster nodes: a key a user or a
channel operator sets on one node is read, subscribed to and shown in WHOIS on the other
(it lived in each node's IRC server before: a user of node B saw nothing of A's).
The hub's part (stamps, the order of two nodes' changes) is in tests/test_metadata.py."""
from __future__ import annotations

from tests.cluster_support import (  # noqa: F401 (fixtures)
    ROOM,
    cluster,
    irc_user,
    postgres_database,
    postgres_dsn,
    until,
)

CAPS = "draft/metadata-3 batch"
END = r" BATCH :?-"  # of the metadata batch a GET is answered in


def test_metadata_set_on_one_node_is_read_and_followed_on_the_other(cluster):
    (_, a_irc), (_, b_irc) = cluster("a"), cluster("b")
    alice = irc_user(cluster, a_irc, "alice", caps=CAPS)  # founds the room on A: its operator
    bob = irc_user(cluster, b_irc, "bob", caps=CAPS, join=False)
    bob.send("METADATA * SUB avatar topic-url\r\n")
    bob.expect(r" 770 bob avatar topic-url")
    alice.send("METADATA * SET avatar :https://example.org/alice.png\r\n")
    alice.expect(r" 761 alice alice avatar \* :?https://example.org/alice.png")
    alice.send(f"METADATA {ROOM} SET topic-url :https://example.org/room\r\n")
    alice.expect(rf" 761 alice {ROOM} topic-url \* :?https://example.org/room")

    # bob joins on B: the room's and its members' subscribed keys follow the names
    until(bob, f"METADATA {ROOM} GET topic-url", END, r" 761 bob \S+ topic-url \* :?https://example.org/room")
    bob.send(f"JOIN {ROOM}\r\n")
    bob.expect(rf" 366 bob {ROOM} ")
    bob.expect(r" 761 bob alice avatar \* :?https://example.org/alice.png")
    bob.send("WHOIS alice\r\n")
    bob.expect(r" 760 bob alice avatar \* :?https://example.org/alice.png")
    bob.expect(r" 318 bob alice ")

    # changes on A reach B's subscriber; a key bob did not subscribe to does not
    alice.expect(rf":bob!\S+ JOIN :?{ROOM}")
    alice.send("METADATA * SET pronouns :she/her\r\nMETADATA * SET avatar :https://example.org/2.png\r\n")
    bob.expect(r" 761 bob alice avatar \* :?https://example.org/2.png")
    assert not [line for line in bob.seen if "pronouns" in line]
    alice.send(f"METADATA {ROOM} SET topic-url\r\n")  # unset
    bob.expect(rf" 766 bob {ROOM} topic-url :key not set")
    bob.send("METADATA alice LIST\r\n")
    bob.expect(r" 761 bob alice avatar \* :?https://example.org/2.png")
    bob.expect(r" 761 bob alice pronouns \* :?she/her")

    # bob, made an operator, sets the room's key on B: alice (A) reads it
    alice.send(f"MODE {ROOM} +o bob\r\n")
    bob.expect(rf"MODE {ROOM} \+o bob")
    bob.send(f"METADATA {ROOM} SET topic-url :https://example.org/b\r\n")
    bob.expect(rf" 761 bob {ROOM} topic-url \* :?https://example.org/b")
    until(alice, f"METADATA {ROOM} GET topic-url", END, r" 761 alice \S+ topic-url \* :?https://example.org/b")

    # a third node started now learns both from the others (the roster, the rooms' state)
    (_, c_irc) = cluster("c")
    carol = irc_user(cluster, c_irc, "carol", caps=CAPS, join=False)
    until(carol, "METADATA alice GET pronouns", END, r" 761 carol alice pronouns \* :?she/her")
    until(carol, f"METADATA {ROOM} GET topic-url", END, r" 761 carol \S+ topic-url \* :?https://example.org/b")
