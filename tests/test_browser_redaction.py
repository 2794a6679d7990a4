"""A message taken back (IRCv3 draft/message-redaction, issue 16 item 1) in the bundled web
client, in Debian's Chromium through Playwright (never `playwright install`), against
`twistd -n chathub`: an IRC client redacts its message and the open page shows "message
deleted" in its place; a page that joins later reads the same from history; /delete takes back
one's own last message; /msg @#room reaches the room's operators.
"""
from __future__ import annotations

import re

from tests.browser_helpers import WAIT_MS, Page, page_and_irc

ROOM = "#takeback"


def test_a_redacted_message_shows_as_message_deleted_live_and_in_history(browser, hub_ports):
    server, ports, _ = hub_ports
    url, alice, carl = page_and_irc(browser, ports, ROOM, "message-tags echo-message draft/message-redaction")

    carl.send(f"PRIVMSG {ROOM} :this one was a mistake")
    echo = carl.expect(r"PRIVMSG #takeback :this one was a mistake")
    msgid = re.search(r"msgid=([^; ]+)", echo).group(1)
    carl.send(f"PRIVMSG {ROOM} :this one stays")
    alice.wait_line("this one stays")
    item = alice.page.locator(f"#message-list li[data-id='{msgid}']")
    assert item.locator(".text").inner_text() == "this one was a mistake"

    carl.send(f"REDACT {ROOM} {msgid} :typo")
    carl.expect(rf"REDACT #takeback {msgid} :?typo$")
    alice.page.locator(f"#message-list li[data-id='{msgid}'] .text:text-is('message deleted')").wait_for(
        timeout=WAIT_MS
    )
    assert item.get_attribute("class") == "message deleted"
    assert item.locator(".text").get_attribute("title") == "deleted by carl: typo"
    assert item.locator(".nick").inner_text().startswith("carl")  # where it was, and whose
    assert alice.page.locator("#message-list li", has_text="this one was a mistake").count() == 0
    assert alice.wait_line("this one stays")
    alice.screenshot("redaction-live.png")

    # a page that opens the room afterwards reads the same from history
    bob = Page(browser, url, 1280, 800)
    bob.login("bob")
    bob.join(ROOM)
    bob.wait_line("this one stays")
    later = bob.page.locator(f"#message-list li[data-id='{msgid}']")
    later.wait_for(timeout=WAIT_MS)
    assert later.locator(".text").inner_text() == "message deleted"
    assert later.locator(".text").get_attribute("title") == "deleted by carl: typo"
    assert bob.page.locator("#message-list li", has_text="this one was a mistake").count() == 0
    bob.screenshot("redaction-history.png")

    # /delete takes back one's own last message here: IRC with the capability gets REDACT
    bob.type("bob's regrettable line")
    mine = bob.page.locator("#message-list li", has_text="bob's regrettable line")
    mine.wait_for(timeout=WAIT_MS)
    own_id = mine.get_attribute("data-id")
    carl.expect(r"PRIVMSG #takeback :bob's regrettable line")
    bob.type("/delete changed my mind")
    assert carl.expect(rf"REDACT #takeback {own_id} ").endswith(":changed my mind")
    bob.page.locator(f"#message-list li[data-id='{own_id}'] .text:text-is('message deleted')").wait_for(
        timeout=WAIT_MS
    )
    alice.page.locator(f"#message-list li[data-id='{own_id}'] .text:text-is('message deleted')").wait_for(
        timeout=WAIT_MS
    )
    bob.type("/delete")  # nothing of bob's is left to delete here
    bob.page.locator("#message-list li.error", has_text="No message of yours here to delete.").wait_for(
        timeout=WAIT_MS
    )
    # STATUSMSG from the web: /msg @#room reaches the room's operators (alice), shown in the room
    bob.type(f"/msg @{ROOM} only for the operators")
    line = alice.wait_line("only for the operators")
    assert "@ only" in line
    assert bob.page.locator("#sidebar li", has_text=f"@{ROOM}").count() == 0  # no conversation of its own
    assert alice.errors == [] and bob.errors == []
