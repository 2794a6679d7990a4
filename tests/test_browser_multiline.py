"""A long message in the bundled web client (issue 13, item 2), in Debian's Chromium through
Playwright (never `playwright install`), against `twistd -n chathub`: a block pasted by an IRC
client as one draft/multiline batch is one message on the page, folded after 12 lines with
"show more"; a short one of a few lines is shown whole, without the button.
"""
from __future__ import annotations

from tests.browser_helpers import WAIT_MS, Page, page_and_irc
from tests.support import LineClient

ROOM = "#paste"


def paste(client: LineClient, ref: str, lines: list[str]) -> None:
    client.send(f"BATCH +{ref} draft/multiline {ROOM}")
    for line in lines:
        client.send(f"@batch={ref} PRIVMSG {ROOM} :{line}")
    client.send(f"BATCH -{ref}")


def test_a_pasted_block_is_one_message_folded_after_12_lines_with_show_more(browser, hub_ports):
    server, ports, _ = hub_ports
    url, alice, carl = page_and_irc(browser, ports, ROOM, "batch draft/multiline")

    paste(carl, "a", ["short one", "short two", "short three"])
    short = alice.page.locator("#message-list li", has_text="short three")
    short.wait_for(timeout=WAIT_MS)
    assert short.locator(".text").inner_text() == "short one\nshort two\nshort three"
    assert short.locator(".show-more").count() == 0

    block = [f"line {i:02d} of the pasted block" for i in range(30)]
    paste(carl, "b", block)
    item = alice.page.locator("#message-list li", has_text="line 00 of the pasted block")
    item.wait_for(timeout=WAIT_MS)
    assert alice.page.locator("#message-list li", has_text="line 01 of").count() == 1  # one message
    text = item.locator(".text")
    assert text.get_attribute("class") == "text collapsed"
    button = item.locator("button.show-more")
    assert button.inner_text() == "show more" and button.get_attribute("aria-expanded") == "false"
    line_height = short.locator(".text").evaluate("e => e.getBoundingClientRect().height") / 3
    folded = text.evaluate("e => e.getBoundingClientRect().height")
    assert 11 * line_height < folded < 13 * line_height  # about 12 lines shown
    assert text.evaluate("e => e.scrollHeight") > folded  # the rest is there, hidden
    alice.screenshot("multiline-folded.png")

    # on a phone the button sits under the text too
    bob = Page(browser, url, 390, 844)
    bob.login("bob")
    bob.join(ROOM)
    paste(carl, "c", [f"phone {i:02d}" for i in range(20)])
    phone = bob.page.locator("#message-list li", has_text="phone 00")
    phone.wait_for(timeout=WAIT_MS)
    below = phone.locator(".show-more").evaluate("e => e.getBoundingClientRect().top")
    assert below >= phone.locator(".text").evaluate("e => e.getBoundingClientRect().bottom")
    bob.screenshot("multiline-phone.png")
    assert bob.errors == []

    button.click()
    assert button.inner_text() == "show less" and button.get_attribute("aria-expanded") == "true"
    assert text.get_attribute("class") == "text"
    unfolded = text.evaluate("e => e.getBoundingClientRect().height")
    assert unfolded > 29 * line_height
    assert text.inner_text() == "\n".join(block)
    alice.screenshot("multiline-unfolded.png")
    button.click()
    assert text.get_attribute("class") == "text collapsed"

    # what the page sends with line breaks is one message too: one batch to carl
    alice.type("from the page\nsecond line")
    carl.expect(r"BATCH \+\S+ draft/multiline #paste$")
    carl.expect(r"PRIVMSG #paste :from the page$")
    carl.expect(r"PRIVMSG #paste :second line$")
    carl.expect(r"BATCH -\S+$")
    # past the server's limit nothing is sent, the page says why and keeps the text
    alice.type("y" * 4097)
    alice.page.locator("#message-list li.error", has_text="at most 4096 bytes").wait_for(timeout=WAIT_MS)
    assert alice.page.input_value("#input") == "y" * 4097
    assert alice.errors == []
    carl.close()
