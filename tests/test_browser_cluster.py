"""The bundled web client (Debian's Chromium through Playwright) on a node of a cluster whose
other node holds its account's nick (two real ``twistd chathub`` nodes, PostgreSQL, Redis:
tests/cluster_support.py)."""
from __future__ import annotations

from tests.browser_helpers import WAIT_MS, Page
from tests.cluster_support import (  # noqa: F401 (fixtures)
    ROOM,
    cluster,
    irc_user,
    postgres_database,
    postgres_dsn,
    until,
)


def test_a_browser_on_the_other_node_of_its_accounts_session_logs_in_under_another_nick(browser, cluster):
    """The account's nick is held by its IRC session on node a; the browser reaches node b
    (behind one port the kernel picks the node), whose login is refused with
    ``nick_on_other_server``: a session can join its account's user only on the node that
    holds it. The client showed that refusal and stopped at its login form; it now logs in to
    the account under another nick, as when the nick is in use, and says why."""
    (_, a_irc), (_, b_irc) = cluster("a"), cluster("b")
    alice = irc_user(cluster, a_irc, "alice")
    alice.send("REGISTER * * alice-secret-1\r\n")
    alice.expect(r" 900 alice ")
    alice.send(f"PART {ROOM}\r\nJOIN {ROOM}\r\n")  # in the room as the account: it is kept
    alice.expect(rf" 366 alice {ROOM} ")
    bob = irc_user(cluster, b_irc, "bob", join=False)
    until(bob, "WHOIS alice", r" 318 ", r" 330 bob alice alice ")  # b has heard of alice's account
    page = Page(browser, f"http://127.0.0.1:{cluster.http['b']}/", 1280, 800)
    page.login_account("alice", "alice-secret-1", "alice_")
    p = page.page
    banner = p.locator("#banner")
    banner.wait_for(timeout=WAIT_MS)
    assert "alice is in use by your session on another server of this network" in banner.inner_text()
    p.locator("#room-list li", has_text=ROOM).wait_for(timeout=WAIT_MS)  # the account's room
    p.click(f"#room-list li >> text={ROOM}")
    p.wait_for_selector(f"#conv-name:text-is('{ROOM}')", timeout=WAIT_MS)
    alice.say("hello, other me")
    page.wait_line("hello, other me")
    page.type("answered from node b")
    alice.expect(rf"^:alice_!\S+ PRIVMSG {ROOM} :answered from node b$")
    assert not page.errors, page.errors
