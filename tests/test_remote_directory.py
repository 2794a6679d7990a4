"""``RemoteDirectory``: the users of other cluster nodes, from their presence messages."""
from __future__ import annotations

from chathub.hub.remote import RemoteDirectory, RemoteUser


def entry(nick: str, account=None, session="s1") -> list:
    return [nick, "~" + nick, "h.cloak", account, nick, session]


def test_presence_messages_build_and_update_the_directory():
    here = RemoteDirectory("a")
    assert here.apply({"node": "b", "presence": [["on", entry("Bob")], ["on", entry("carol", account="carol")]]}) is False
    assert here.said("BOB") == RemoteUser("b", "Bob", "~Bob", "h.cloak", None, "Bob", "s1")
    bob = here.get("bob")
    assert (bob.nick, bob.user, bob.host, bob.session, bob.participant.node) == ("Bob", "~Bob", "h.cloak", "s1", "b")
    here.apply({"node": "b", "presence": [["nick", "bob", "Robert"]]})
    assert here.get("bob") is None and here.get("robert").nick == "Robert"
    here.apply({"node": "b", "presence": [["off", "carol"]]})
    assert here.get("carol") is None
    # another node cannot rename or drop b's users
    here.apply({"node": "c", "presence": [["off", "robert"], ["nick", "robert", "x"]]})
    assert here.get("robert").participant.node == "b"
    # own messages are ignored
    here.apply({"node": "a", "presence": [["on", entry("self")]]})
    assert here.get("self") is None


def test_a_roster_replaces_a_node_and_hello_asks_for_rosters():
    here = RemoteDirectory("a")
    here.apply({"node": "b", "presence": [["on", entry("old")], ["on", entry("kept")]]})
    here.apply({"node": "c", "presence": [["on", entry("other")]]})
    assert here.apply({"node": "b", "presence": [["hello"], ["roster", [entry("kept"), entry("new")]]]}) is True
    assert sorted(u.nick for u in here.users.values()) == ["kept", "new", "other"]
    gone = here.drop_node("b")
    assert sorted(u.nick for u in gone) == ["kept", "new"] and list(here.users) == ["other"]
