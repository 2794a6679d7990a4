"""A busy room in the bundled web client (issue 13, item 9), in Debian's Chromium through
Playwright (never `playwright install`), against `twistd -n chathub`: a telnet bridge (exempt
from flood control) pastes 2,000 lines; every one reaches the page, the message list holds a
bounded number of them, a reader scrolled up is not moved but told how many new messages
came, and older lines come back with "Load older messages". How fast is measured by
bench/web_busy.py, never asserted here.
"""
from __future__ import annotations

from tests.browser_helpers import WAIT_MS, Page
from tests.support import LineClient, server_config

ROOM = "#busy"
#: what app.js keeps in the message list while the reader is at the bottom (DOM_LINES)
DOM_LINES = 300


def bridge(port: int) -> LineClient:
    client = LineClient(port)
    client.send("/nick bridge")
    client.expect(r"^\* you are bridge")
    client.send(f"/join {ROOM}")
    client.expect(rf"^\* you joined {ROOM}$")
    return client


def paste(client: LineClient, lines: list[str]) -> None:
    client.send(b"".join(line.encode() + b"\r\n" for line in lines))  # one write


def chat_items(page) -> int:
    return page.locator("#message-list li:not(.day)").count()


def test_a_flood_reaches_the_page_with_a_bounded_list_and_a_new_messages_marker(browser, tmp_path,
                                                                                 twistd_server):
    server = twistd_server(server_config(tmp_path / "var", '[limits]\nflood_exempt = ["127.0.0.1"]\n',
                                         http=True))
    url = f"http://127.0.0.1:{server.port('http')}/"
    alice = Page(browser, url, 1280, 800)
    alice.login("alice")
    alice.join(ROOM)
    feed = bridge(server.port("line"))
    alice.page.locator("#member-list li", has_text="bridge").wait_for(timeout=WAIT_MS)

    count = 2000
    paste(feed, [f"flood {i:04d}" for i in range(count)])
    alice.page.locator("#message-list li", has_text=f"flood {count - 1:04d}").wait_for(timeout=30_000)
    # every message arrived, in order; the list holds the newest DOM_LINES
    texts = alice.page.locator("#message-list li:not(.day) .text").all_inner_texts()
    assert texts == [f"flood {i:04d}" for i in range(count - DOM_LINES, count)]
    box = alice.page.locator("#messages")
    assert box.evaluate("b => b.scrollHeight - b.scrollTop - b.clientHeight") < 40  # followed to the end
    assert alice.page.locator("#new-messages").is_hidden()
    assert alice.page.locator("#message-list li").first.get_attribute("class") == "day"  # the day is shown

    # a reader scrolled up stays where they are, and is told what came meanwhile
    box.evaluate("b => { b.scrollTop = 200; }")
    anchor = alice.page.locator("#message-list li", has_text=f"flood {count - DOM_LINES + 10:04d}")
    top_before = anchor.evaluate("e => e.getBoundingClientRect().top")
    paste(feed, [f"later {i}" for i in range(5)])
    marker = alice.page.locator("#new-messages")
    alice.page.locator("#new-messages:text-is('5 new messages ↓')").wait_for(timeout=WAIT_MS)
    assert alice.page.locator("#message-list li", has_text="later 4").count() == 1
    assert anchor.evaluate("e => e.getBoundingClientRect().top") == top_before  # not moved
    assert chat_items(alice.page) == DOM_LINES + 5  # the window is kept while reading
    alice.screenshot("busy-new-messages.png")
    marker.click()
    marker.wait_for(state="hidden", timeout=WAIT_MS)
    assert box.evaluate("b => b.scrollHeight - b.scrollTop - b.clientHeight") < 40

    # at the bottom again the next line trims the list back; older lines come back on request
    paste(feed, ["back at the bottom"])
    alice.wait_line("back at the bottom")
    assert chat_items(alice.page) == DOM_LINES
    assert alice.page.locator("#message-list li").first.get_attribute("class") == "day"
    older = alice.page.locator("#load-older")
    assert older.is_visible()
    first = f"flood {count - DOM_LINES + 6:04d}"
    older.click()
    alice.page.locator("#message-list li", has_text=f"flood {count - DOM_LINES - 1:04d}").wait_for(timeout=WAIT_MS)
    assert chat_items(alice.page) > DOM_LINES
    assert alice.page.locator("#message-list li", has_text=first).count() == 1
    assert alice.errors == []
    feed.close()
