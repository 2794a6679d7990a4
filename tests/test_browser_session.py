"""The web client resumes an account's session after a reload with its session token (no
password asked), and /logout ends it for good; in Debian's Chromium against twistd."""
from __future__ import annotations

from tests.browser_helpers import WAIT_MS, Page


def test_reload_resumes_the_session_and_logout_ends_it(browser, hub_ports):
    server, ports, _ = hub_ports
    url = f"http://127.0.0.1:{ports['http']}/"
    maker = Page(browser, url, 1280, 800)
    maker.register("alice", "alice's secret")
    # registering in the form logs in to the new account: a reload resumes it too
    assert "cht_" in maker.page.evaluate("localStorage.getItem('chathub.token')")
    maker.page.reload()
    maker.page.wait_for_selector("#me:text-is('alice ✓')", timeout=WAIT_MS)
    maker.type("/quit")
    maker.page.wait_for_selector("#login-view:not([hidden])", timeout=WAIT_MS)

    page = Page(browser, url, 1280, 800)
    p = page.page
    page.login_account("alice", "alice's secret")
    page.join("#lobby")
    saved = p.evaluate("localStorage.getItem('chathub.token')")
    assert saved and "cht_" in saved
    token = saved.split('"token":"')[1].split('"')[0]

    p.reload()
    # logged in again from the saved token, no form filled, in the room it was in
    p.wait_for_selector("#me:text-is('alice ✓')", timeout=WAIT_MS)
    assert p.is_hidden("#login-view")
    p.locator("#room-list li", has_text="#lobby").first.wait_for(timeout=WAIT_MS)
    # the page before the reload left (the log's one line for a connection: when it closes)
    server.expect_log(r"WebSocket connection from 127\.0\.0\.1 closed \(alice\)")

    page.type("/logout")
    p.wait_for_selector("#login-view:not([hidden])", timeout=WAIT_MS)
    assert p.evaluate("localStorage.getItem('chathub.token')") in (None, "null")
    p.reload()
    p.wait_for_selector("#login-button:not([disabled])", timeout=WAIT_MS)
    assert p.is_visible("#login-view") and p.is_hidden("#chat-view")
    assert not page.errors, page.errors
    assert not server.exceptions, server.exceptions
    assert not [line for line in server.log if token in line]  # never logged
