"""A second browser of an account while the first stays connected ([auth] multiclient): two
Playwright contexts (each its own localStorage) in Debian's Chromium against twistd, with an
IRC user over a real socket. The second shows the same nick, the account's rooms and its
private conversations; what either says reaches the other; the second closing is seen by
nobody."""
from __future__ import annotations

from tests.browser_helpers import WAIT_MS, Page, irc_client


def test_a_second_browser_is_the_same_user_while_the_first_stays(browser, hub_ports):
    server, ports, _ = hub_ports
    url = f"http://127.0.0.1:{ports['http']}/"
    first = Page(browser, url, 1280, 800)
    first.register("alice", "alice-secret")
    first.join("#lobby")
    bob = irc_client(ports["irc"], "bob")
    bob.send("JOIN #lobby")
    bob.expect(r"JOIN :?#lobby")
    bob.send("PRIVMSG alice :a word in private, from IRC")
    first.page.locator("#private-list li", has_text="bob").wait_for(timeout=WAIT_MS)
    first.page.click("#private-list li >> text=bob")
    first.wait_line("a word in private, from IRC")

    second = Page(browser, url, 1280, 800)
    assert second.page.evaluate("localStorage.length") == 0
    second.login_account("alice", "alice-secret", "alice")  # the same nick: not alice_
    p = second.page
    p.locator("#room-list li", has_text="#lobby").wait_for(timeout=WAIT_MS)
    p.locator("#private-list li", has_text="bob").wait_for(timeout=WAIT_MS)
    assert not p.is_visible("#banner") or "alice_" not in (p.text_content("#banner") or "")
    p.click("#private-list li >> text=bob")
    p.wait_for_selector("#conv-name:text-is('bob')", timeout=WAIT_MS)
    second.wait_line("a word in private, from IRC")

    # what the second says reaches bob once and shows in the first, still connected
    second.type("answered from the phone")
    bob.expect(r"^:alice!\S+ PRIVMSG bob :answered from the phone$")
    assert "answered from the phone" in first.wait_line("answered from the phone")
    bob.send("PRIVMSG alice :to both of you")
    first.wait_line("to both of you")
    second.wait_line("to both of you")
    # the room: one member alice, whose lines either browser shows
    p.click("#room-list li >> text=#lobby")
    p.wait_for_selector("#conv-name:text-is('#lobby')", timeout=WAIT_MS)
    p.locator("#member-list li", has_text="bob").wait_for(timeout=WAIT_MS)
    assert p.locator("#member-list li").count() == 2
    first.page.click("#room-list li >> text=#lobby")
    first.type("hello from the desk")
    bob.expect(r"^:alice!\S+ PRIVMSG #lobby :hello from the desk$")
    second.wait_line("hello from the desk")
    second.screenshot("multiclient-second-browser.png")

    # the second browser goes: nobody sees alice leave, the first carries on
    second.context.close()
    server.expect_log(r"alice closed a session via ws")
    bob.send("PING :after")
    bob.expect(r"PONG .*after")
    assert not [line for line in bob.seen if " QUIT " in line or " PART " in line], bob.seen
    first.type("still here")
    bob.expect(r"^:alice!\S+ PRIVMSG #lobby :still here$")
    assert not first.errors and not second.errors, (first.errors, second.errors)
    assert not server.exceptions, server.exceptions
    bob.close()
