"""Presence across ``twistd chathub`` nodes (docs/cluster.md): WHOIS, WHO, ISON, USERHOST,
MONITOR, LUSERS and INVITE see users of the other node; away, account and real-name changes
reach the other node's users as local ones do; the quits of a dead node's users are stored
once; a node that starts while a room is in use gets the room's state.

Real nodes, one PostgreSQL database, one redis-server (tests/cluster_support.py).
"""
from __future__ import annotations

import re

from tests.cluster_support import (  # noqa: F401 (fixtures)
    ROOM,
    answer,
    cluster,
    first,
    irc_user,
    meet,
    postgres_database,
    postgres_dsn,
    telnet_user,
    until,
)
from tests.support import OPER_HASH, OPER_PASSWORD

NOTIFY_CAPS = "away-notify account-notify setname"


def test_whois_who_ison_userhost_and_lusers_see_users_of_the_other_node(cluster):
    (a_line, a_irc), (b_line, b_irc) = cluster("a"), cluster("b")
    alice = irc_user(cluster, a_irc, "alice")  # founds #x on A
    alice.send("REGISTER * alice@example.org correct-horse\r\n")
    alice.expect(r" 900 ")
    alice.send("AWAY :lunch\r\n")
    alice.expect(r" 306 ")
    bob = irc_user(cluster, b_irc, "bob", join=False)
    assert until(bob, "ISON nobody alice", r" 303 ", r" 303 bob :?alice$")
    whois = until(bob, "WHOIS alice", r" 318 ", r" 301 bob alice :?lunch")
    numerics = {line.split(" ")[1]: line for line in whois}
    assert " 311 bob alice " in numerics["311"]
    assert re.search(rf" 319 bob alice :?@{ROOM}$", numerics["319"])  # its room and privileges, from B's copy
    assert " 330 bob alice alice " in numerics["330"]
    who = first(answer(bob, "WHO alice %tnfa,42", r" 315 "), "354")
    assert who.split(" ")[2:] == ["bob", "42", "alice", "G", "alice"]  # away, logged in
    userhost = first(answer(bob, "USERHOST alice", r" 302 "), "302")
    assert re.search(r" 302 bob :?alice=-", userhost)  # away
    carol = cluster.connect(b_line)
    carol.send("/nick carol\r\n/who\r\n")
    carol.expect(r"alice \(irc, account alice\) away: lunch")  # telnet's /who
    lusers = {line.split(" ")[1]: line for line in answer(bob, "LUSERS", r" 266 ")}
    assert "I have 2 clients" in lusers["255"]  # bob and carol, on B
    assert "Current local users 2," in lusers["265"]
    assert "Current global users 3," in lusers["266"]  # and alice, on A


def test_away_account_and_realname_changes_reach_the_other_nodes_users(cluster):
    (a_line, a_irc), (b_line, b_irc) = cluster("a"), cluster("b")
    alice = irc_user(cluster, a_irc, "alice", caps="setname")
    bob = irc_user(cluster, b_irc, "bob", caps=NOTIFY_CAPS, once_listed=True)
    carol = telnet_user(cluster, b_line, "carol")
    meet(alice, [bob, carol])
    alice.send("AWAY :lunch\r\n")
    assert bob.expect(r" AWAY ").startswith(":alice!")
    carol.send(f"/who {ROOM}\r\n")
    carol.expect(r"alice \(irc\) away: lunch")
    alice.send("SETNAME :Alice Liddell\r\n")
    assert bob.expect(r" SETNAME ").endswith("SETNAME :Alice Liddell")
    alice.send("REGISTER * alice@example.org correct-horse\r\n")
    assert bob.expect(r" ACCOUNT ").rstrip().endswith("ACCOUNT alice")
    alice.send("AWAY\r\n")
    back = bob.expect(r" AWAY")
    assert back.startswith(":alice!") and back.rstrip().endswith("AWAY")
    # WHOIS on B tells the new state
    whois = {line.split(" ")[1]: line for line in answer(bob, "WHOIS alice", r" 318 ")}
    assert whois["311"].endswith(":Alice Liddell") and " 330 bob alice alice " in whois["330"]
    assert "301" not in whois


def test_monitor_and_whowas_follow_users_of_the_other_node(cluster):
    (a_line, a_irc), (b_line, b_irc) = cluster("a"), cluster("b")
    bob = irc_user(cluster, b_irc, "bob", join=False)
    bob.send("MONITOR + alice\r\n")
    bob.expect(r" 731 bob :?alice$")  # offline
    alice = irc_user(cluster, a_irc, "alice", join=False)
    bob.expect(r" 730 bob :?alice!")
    assert re.search(r" 730 bob :?alice!", answer(bob, "MONITOR S", r" 73[01] ")[-1])
    alice.send("NICK alice2\r\n")
    bob.expect(r" 731 bob :?alice$")
    bob.send("MONITOR + alice2\r\n")
    bob.expect(r" 730 bob :?alice2!")
    alice.send("QUIT :bye\r\n")
    bob.expect(r" 731 bob :?alice2$")
    # WHOWAS at B remembers A's user under both nicks it gave up (it answered 406 before)
    for nick in ("alice2", "alice"):
        lines = answer(bob, f"WHOWAS {nick}", r" 369 ")
        assert re.search(rf" 314 bob {nick} ~alice \S+ \* :?alice$", first(lines, "314")), lines


def test_an_invite_reaches_a_user_of_the_other_node_who_may_then_join(cluster):
    (a_line, a_irc), (b_line, b_irc) = cluster("a"), cluster("b")
    alice = irc_user(cluster, a_irc, "alice")
    alice.send(f"MODE {ROOM} +i\r\n")
    alice.expect(rf"MODE {ROOM} \+i")
    bob = irc_user(cluster, b_irc, "bob", join=False)
    until(bob, f"MODE {ROOM}", r" 324 | 403 ", rf" 324 bob {ROOM} \+\S*i")  # B has +i
    bob.send(f"JOIN {ROOM}\r\n")
    bob.expect(rf" 473 bob {ROOM} ")
    until(alice, f"INVITE bob {ROOM}", r" 341 | 401 ", r" 341 alice bob ")
    assert bob.expect(rf" INVITE bob :?{ROOM}").startswith(":alice!")
    bob.send(f"JOIN {ROOM}\r\n")
    bob.expect(rf" 366 bob {ROOM} ")
    alice.expect(rf":bob!\S+ JOIN :?{ROOM}")


def test_an_invite_between_users_of_one_node_is_told_to_the_operators_of_every_node(cluster):
    """invite-notify: an invite was carried to another node only when the invited user was
    there, so operators of the room on the other nodes never heard of an invite between two
    users of one node (on one node, every operator does)."""
    (a_line, a_irc), (b_line, b_irc) = cluster("a"), cluster("b")
    alice = irc_user(cluster, a_irc, "alice", caps="invite-notify")  # the room's operator, on A
    bob = irc_user(cluster, b_irc, "bob", caps="invite-notify", once_listed=True)
    meet(bob, [alice])
    meet(alice, [bob])
    alice.send(f"MODE {ROOM} +o bob\r\n")
    bob.expect(rf"MODE {ROOM} \+o bob")
    carol = irc_user(cluster, b_irc, "carol", join=False)
    dave = irc_user(cluster, a_irc, "dave", join=False)
    bob.send(f"INVITE carol {ROOM}\r\n")  # both on B
    bob.expect(r" 341 bob carol ")
    carol.expect(rf" INVITE carol :?{ROOM}")
    assert alice.expect(rf" INVITE carol :?{ROOM}").startswith(":bob!")
    alice.send(f"INVITE dave {ROOM}\r\n")  # both on A
    alice.expect(r" 341 alice dave ")
    dave.expect(rf" INVITE dave :?{ROOM}")
    assert bob.expect(rf" INVITE dave :?{ROOM}").startswith(":alice!")


def test_private_history_with_a_guest_of_the_other_node(cluster):
    """A guest's private talk is stored under its connection (``nick/session``); a node
    named a guest of another node by its bare nick, so CHATHISTORY of a private talk across
    nodes was empty on both sides (while the same talk on one node was not). After the
    guest left, WHOWAS (which now remembers other nodes' users) names its connection."""
    caps = "draft/chathistory batch server-time message-tags"
    (a_line, a_irc), (b_line, b_irc) = cluster("a"), cluster("b")
    alice = irc_user(cluster, a_irc, "alice", caps=caps, join=False)
    carol = irc_user(cluster, b_irc, "carol", caps=caps, join=False)
    until(alice, "ISON carol", r" 303 ", r" 303 alice :?carol$")  # A has heard of carol
    until(carol, "ISON alice", r" 303 ", r" 303 carol :?alice$")
    alice.send("PRIVMSG carol :hello from A\r\n")
    carol.expect(r"PRIVMSG carol :hello from A$")
    carol.send("PRIVMSG alice :hello from B\r\n")
    alice.expect(r"PRIVMSG alice :hello from B$")
    talk = [r":alice!\S+ PRIVMSG carol :hello from A$", r":carol!\S+ PRIVMSG alice :hello from B$"]

    def shown(client, nick, other):
        lines = until(client, f"CHATHISTORY LATEST {other} * 10", r" BATCH -", talk[1])
        return [line.split(" ", 1)[1] for line in lines if " PRIVMSG " in line]

    for client, nick, other in ((alice, "alice", "carol"), (carol, "carol", "alice")):
        got = shown(client, nick, other)
        assert len(got) == 2 and all(re.match(p, line) for p, line in zip(talk, got)), got
    carol.send("QUIT :bye\r\n")
    until(alice, "ISON carol", r" 303 ", r" 303 alice :?$")
    got = shown(alice, "alice", "carol")  # the talk of carol's connection, named by WHOWAS
    assert len(got) == 2 and all(re.match(p, line) for p, line in zip(talk, got)), got


def test_an_account_registered_on_one_node_protects_its_nick_on_the_other(cluster):
    """A node read the account names at start-up and learned only its own registrations:
    a guest of another node could take the nick of an account registered after that node
    started. A registration is announced now (and names are read again after Redis)."""
    (a_line, a_irc), (b_line, b_irc) = cluster("a"), cluster("b")
    alice = irc_user(cluster, a_irc, "alice", join=False)
    alice.send("REGISTER * * correct-horse-battery\r\n")
    alice.expect(r" 900 alice ")
    alice.send("QUIT :bye\r\n")
    alice.expect_closed()
    bob = irc_user(cluster, b_irc, "bob", join=False)
    until(bob, "ISON alice", r" 303 ", r" 303 bob :?$")  # B heard alice leave (after the account)
    bob.send("NICK alice\r\n")
    assert "registered" in bob.expect(r" 433 bob alice ")
    guest = cluster.connect(b_irc)
    guest.send("NICK alice\r\nUSER g 0 * :g\r\n")
    assert "registered" in guest.expect(r" 433 \S+ alice ")


def test_an_accounts_read_markers_follow_it_to_the_other_node(cluster):
    """Read markers were kept in each node's memory: an account that logged in to another
    node found none. They are stored now, and read back at login."""
    import base64

    (a_line, a_irc), (b_line, b_irc) = cluster("a"), cluster("b")
    alice = irc_user(cluster, a_irc, "alice", caps="draft/read-marker")
    alice.send("REGISTER * * correct-horse-battery\r\n")
    alice.expect(r" 900 alice ")
    alice.send(f"PART {ROOM}\r\nJOIN {ROOM}\r\n")  # in the room as the account: it is kept
    alice.expect(rf" 366 alice {ROOM} ")
    alice.send(f"MARKREAD {ROOM} timestamp=2026-01-02T03:04:05.000Z\r\n")
    alice.expect(rf" MARKREAD {ROOM} timestamp=2026-01-02T03:04:05.000Z$")
    alice.send("QUIT :moving\r\n")
    alice.expect_closed()
    again = cluster.connect(b_irc)
    blob = base64.b64encode(b"alice\0alice\0correct-horse-battery").decode()
    again.send("CAP REQ :sasl draft/read-marker\r\nNICK alice\r\nUSER alice 0 * :alice\r\n"
               f"AUTHENTICATE PLAIN\r\n")
    again.expect(r"^AUTHENTICATE \+$")
    again.send(f"AUTHENTICATE {blob}\r\nCAP END\r\n")
    again.expect(r" 001 alice ")
    # the kept room is joined again on B, its marker before the end of NAMES
    assert again.expect(rf" (MARKREAD {ROOM}|366 alice {ROOM}) ").endswith("timestamp=2026-01-02T03:04:05.000Z")
    # a second session of the account, on A under another nick: a marker either moves is
    # the account's on both nodes (each node kept its own copy in memory: the phone read
    # the old time, and could set an earlier one than the account's)
    phone = cluster.connect(a_irc)
    blob = base64.b64encode(b"alice\0alice\0correct-horse-battery").decode()
    phone.send("CAP REQ :sasl draft/read-marker\r\nNICK alice_phone\r\nUSER alice 0 * :alice\r\n"
               "AUTHENTICATE PLAIN\r\n")
    phone.expect(r"^AUTHENTICATE \+$")
    phone.send(f"AUTHENTICATE {blob}\r\nCAP END\r\n")
    phone.expect(r" 001 alice_phone ")
    phone.expect(rf" 366 alice_phone {ROOM} ")  # the account's kept room, joined here too
    again.send(f"MARKREAD {ROOM} timestamp=2026-01-02T03:04:09.000Z\r\n")
    again.expect(rf" MARKREAD {ROOM} timestamp=2026-01-02T03:04:09.000Z$")
    phone.expect(rf" MARKREAD {ROOM} timestamp=2026-01-02T03:04:09.000Z$")  # told, as a session here is
    phone.send(f"MARKREAD {ROOM} timestamp=2026-01-02T03:04:07.000Z\r\n")  # earlier: it stays
    phone.expect(rf" MARKREAD {ROOM} timestamp=2026-01-02T03:04:09.000Z$")


OPERATOR = (f'[[irc.operators]]\nname = "boss"\npassword_hash = "{OPER_HASH}"\n'
            'privileges = ["kill", "wallops"]\nhostmask = "*"\n')


def test_an_operator_sees_the_real_address_of_a_user_of_the_other_node_and_no_idle_is_made_up(cluster):
    """A user of another node stood in with no address: an operator's WHOIS labelled its
    cloak "actual IP" (378, 338), and so did WHOX ``%i`` and USERHOST, where one node shows
    127.0.0.1. Its idle time was its time since sign-on (presence does not carry activity,
    which its node alone knows): WHOIS now leaves out 317 for it, and WHOX ``%l`` says 0,
    as other servers do for a user of another server. And WHOWAS remembers a change of
    case of its nick, as for a local user. The nodes cloak one address alike."""
    (a_line, a_irc), (b_line, b_irc) = cluster("a", more=OPERATOR), cluster("b")
    boss = irc_user(cluster, a_irc, "boss", join=False)
    boss.send(f"OPER boss {OPER_PASSWORD}\r\n")
    boss.expect(r" 381 boss ")
    bob = irc_user(cluster, b_irc, "bob", join=False)
    whois = until(boss, "WHOIS bob", r" 318 ", r" 311 boss bob ")
    numerics = {line.split(" ")[1]: line for line in whois}
    assert numerics["378"].endswith(" :is connecting from *@127.0.0.1 127.0.0.1")
    assert " 338 boss bob ~bob@127.0.0.1 127.0.0.1 " in numerics["338"]
    assert "317" not in numerics
    # one address, one cloak on every node (each node keyed its own: a ban on bob's cloak
    # missed him once he reconnected to the other node)
    own = first(answer(boss, "WHOIS boss", r" 318 "), "311")
    assert numerics["311"].split(" ")[5] == own.split(" ")[5] != "127.0.0.1"
    who = first(answer(boss, "WHO bob %tnil,7", r" 315 "), "354")
    assert who.split(" ")[2:] == ["boss", "7", "127.0.0.1", "bob", "0"]
    assert re.search(r" 302 boss :?bob=\+~bob@127\.0\.0\.1$", first(answer(boss, "USERHOST bob", r" 302 "), "302"))
    bob.send("NICK BOB\r\n")
    bob.expect(r" NICK :?BOB")
    until(boss, "WHOWAS bob", r" 369 ", r" 314 boss bob ")


def test_an_operator_reaches_users_of_the_other_node_with_wallops_and_kill(cluster):
    """WALLOPS reached only the operator's node's +w users, and KILL of a user of another
    node answered 401 (no such nick): both now reach the node that holds the user."""
    (a_line, a_irc), (b_line, b_irc) = cluster("a", more=OPERATOR), cluster("b")
    boss = irc_user(cluster, a_irc, "boss", join=False)
    boss.send(f"OPER boss {OPER_PASSWORD}\r\n")
    boss.expect(r" 381 boss ")
    bob = irc_user(cluster, b_irc, "bob", join=False)
    bob.send("MODE bob +w\r\n")
    bob.expect(r"MODE bob :?\+w")
    carol = irc_user(cluster, b_irc, "carol", join=False)  # no +w: no WALLOPS
    until(boss, "ISON bob carol", r" 303 ", r" 303 boss :bob carol$")
    boss.send("WALLOPS :maintenance at noon\r\n")
    assert re.match(r":boss!\S+ WALLOPS :maintenance at noon$", bob.expect(r" WALLOPS "))
    assert not any(" WALLOPS " in line for line in answer(carol, "PING :after", r" PONG "))
    boss.send("KILL nobody :typo\r\n")
    boss.expect(r" 401 boss nobody ")
    boss.send("KILL bob :spamming\r\n")
    closing = bob.expect_closed()
    assert any("Killed by boss (spamming)" in line for line in closing), closing
    until(boss, "ISON bob carol", r" 303 ", r" 303 boss :?carol$")  # bob's nick is free again
    lines = answer(boss, "WHOWAS bob", r" 369 ")
    assert first(lines, "314")
    assert re.search(r" PONG ", answer(carol, "PING :still here", r" PONG ")[-1])  # carol is not


def test_the_quits_of_a_dead_nodes_users_are_stored_once(cluster):
    (a_line, a_irc), (b_line, b_irc) = cluster("a"), cluster("b")
    c_line, c_irc = cluster("c")
    alice = irc_user(cluster, a_irc, "alice", caps="draft/chathistory draft/event-playback batch server-time")
    carol = irc_user(cluster, c_irc, "carol", once_listed=True)
    bob = irc_user(cluster, b_irc, "bob", once_listed=True)
    alice.expect(rf":bob!\S+ JOIN :?{ROOM}")
    carol.expect(rf":bob!\S+ JOIN :?{ROOM}")
    cluster.nodes["b"].kill()  # kill -9: B stores nothing more; A or C reaps it
    alice.expect(r":bob!\S+ QUIT :\*\.net \*\.split", timeout=4.0 + 0.5 + 4.0 + 3.0)
    carol.expect(r":bob!\S+ QUIT :\*\.net \*\.split", timeout=10.0)
    # stored by the reaper after the reap: a moment after it is shown
    history = until(alice, f"CHATHISTORY LATEST {ROOM} * 50", r" BATCH -", r":bob!\S+ QUIT ")
    quits = [line for line in history if " QUIT " in line and ":bob!" in line]
    assert len(quits) == 1  # one survivor stored it
    assert quits[0].endswith("QUIT :*.net *.split")


def test_a_node_that_starts_while_a_room_is_in_use_gets_the_rooms_state(cluster):
    a_line, a_irc = cluster("a")
    alice = irc_user(cluster, a_irc, "alice")  # founds #x on A
    carol = telnet_user(cluster, a_line, "carol")
    alice.send(f"TOPIC {ROOM} :the topic\r\nMODE {ROOM} +kl sesame 10\r\nMODE {ROOM} +b *!*@banned.example\r\n")
    alice.send(f"MODE {ROOM} +v carol\r\nPRIVMSG {ROOM} :said before B started\r\n")
    alice.expect(rf"MODE {ROOM} \+v carol")
    carol.expect(r"said before B started")
    b_line, b_irc = cluster("b")  # B starts now: no event of #x comes after it
    bob = irc_user(cluster, b_irc, "bob", caps="draft/chathistory batch server-time multi-prefix", join=False)
    # B's listeners opened after the state was in: no waiting for it
    names = first(answer(bob, f"NAMES {ROOM}", r" 366 "), "353")
    assert names.split(f" {ROOM} ")[1].lstrip(":").split() == ["@alice", "+carol"]
    assert first(answer(bob, f"TOPIC {ROOM}", r" 333 "), "332").endswith("the topic")
    modes = first(answer(bob, f"MODE {ROOM}", r" 324 "), "324").split(" ")
    assert set(modes[4].lstrip("+")) == set("klnt") and modes[5:] == ["*", "10"]  # a key is hidden from non-members
    assert " *!*@banned.example " in first(answer(bob, f"MODE {ROOM} b", r" 368 "), "367")
    bob.send(f"JOIN {ROOM}\r\n")
    bob.expect(rf" 475 bob {ROOM} ")  # B checks the key it learnt
    bob.send(f"JOIN {ROOM} sesame\r\n")
    bob.expect(rf" 366 bob {ROOM} ")
    alice.expect(rf":bob!\S+ JOIN :?{ROOM}")
    # the room was alive: bob joined it, and made no new one (no ops; its history goes on)
    names = first(answer(bob, f"NAMES {ROOM}", r" 366 "), "353")
    assert names.split(f" {ROOM} ")[1].lstrip(":").split() == ["@alice", "+carol", "bob"]
    history = answer(bob, f"CHATHISTORY LATEST {ROOM} * 10", r" BATCH -")
    assert any(line.endswith("said before B started") for line in history)
