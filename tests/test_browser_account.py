"""An account follows its owner to a second browser (a second Playwright context: its own
localStorage): its rooms and its private conversations are listed, a conversation opens
with its history; "Log out everywhere" in the Account box, and a password change
(/password), revoke every session token and the other browser, logged in with one, is told
and returns to its login form. In Debian's
Chromium against twistd, with an IRC user over a real socket."""
from __future__ import annotations

from tests.browser_helpers import WAIT_MS, Page, irc_client


def saved_token(page: Page):
    return page.page.evaluate("JSON.parse(localStorage.getItem('chathub.token'))")


def test_rooms_and_conversations_follow_the_account_and_log_out_everywhere(browser, hub_ports):
    server, ports, _ = hub_ports
    url = f"http://127.0.0.1:{ports['http']}/"
    first = Page(browser, url, 1280, 800)
    first.register("alice", "alice-secret")
    first.join("#lobby")
    first.join("#garden")
    bob = irc_client(ports["irc"], "bob")
    bob.send("JOIN #lobby")  # to see alice leave
    bob.expect(r"JOIN :?#lobby")
    bob.send("PRIVMSG alice :a word in private, from IRC")
    first.page.locator("#private-list li", has_text="bob").wait_for(timeout=WAIT_MS)
    first.page.click("#private-list li >> text=bob")
    first.wait_line("a word in private, from IRC")
    first.type("and my answer")
    bob.expect(r"PRIVMSG bob :and my answer")
    assert first.page.is_visible("#account-box") and first.page.text_content("#account-name") == "alice"

    # the first browser leaves (/quit keeps its saved session); a second browser has nothing
    # in its localStorage: everything comes from the server
    first.type("/quit")
    first.page.wait_for_selector("#login-view:not([hidden])", timeout=WAIT_MS)
    bob.expect(r":alice!\S+ QUIT ")
    second = Page(browser, url, 390, 844)
    assert second.page.evaluate("localStorage.length") == 0
    second.login_account("alice", "alice-secret", "alice")
    p = second.page
    p.locator("#room-list li", has_text="#lobby").wait_for(state="attached", timeout=WAIT_MS)
    p.locator("#room-list li", has_text="#garden").wait_for(state="attached", timeout=WAIT_MS)
    p.locator("#private-list li", has_text="bob").wait_for(state="attached", timeout=WAIT_MS)
    p.click("#toggle-sidebar")  # a phone: the list is a drawer
    p.click("#private-list li >> text=bob")
    p.wait_for_selector("#conv-name:text-is('bob')", timeout=WAIT_MS)
    assert "a word in private, from IRC" in second.wait_line("a word in private")
    assert "and my answer" in second.wait_line("and my answer")
    # its members panel shows the two parties, bob as known from the room they share
    party = p.locator("#member-list li", has_text="bob")
    party.wait_for(state="attached", timeout=WAIT_MS)
    assert party.locator(".proto").inner_text() == "irc" and p.locator("#member-list li").count() == 2
    second.screenshot("account-second-browser.png")

    # the first browser comes back from its saved token while alice is the second's nick: the
    # same account, under another nick, and it says so
    first.page.reload()
    first.page.wait_for_selector("#me:text-is('alice_ ✓')", timeout=WAIT_MS)
    assert "alice is in use, so you are alice_" in first.page.text_content("#banner")
    first.page.locator("#room-list li", has_text="#lobby").wait_for(timeout=WAIT_MS)
    assert saved_token(first)["token"] != saved_token(second)["token"]

    # Log out everywhere, from the second browser's Account box
    p.click("#toggle-sidebar")
    p.click("#logout-everywhere")
    p.wait_for_selector("#login-view:not([hidden])", timeout=WAIT_MS)
    assert p.text_content("#login-error") == "You are logged out."
    # the first browser is told and shows its login form, its token forgotten
    f = first.page
    f.wait_for_selector("#login-view:not([hidden])", timeout=WAIT_MS)
    assert "ended from another device" in f.text_content("#login-error")
    assert f.get_attribute("#tab-account", "aria-selected") == "true"
    assert saved_token(first) is None and saved_token(second) is None
    # and stays logged out: a reload asks for the password, it does not reconnect
    f.reload()
    f.wait_for_selector("#login-button:not([disabled])", timeout=WAIT_MS)
    assert f.is_visible("#login-view") and f.is_hidden("#chat-view")
    bob.send("WHOIS alice")
    bob.expect(r" 401 bob alice ")
    first.screenshot("account-logged-out-elsewhere.png")

    # both log in again; a password change from one logs the other out the same way
    second.login_account("alice", "alice-secret", "alice")
    first.login_account("alice", "alice-secret", "alice_")
    second.type("/password alice-secret new-secret")
    assert "Password changed" in second.wait_line("Password changed")
    f.wait_for_selector("#login-view:not([hidden])", timeout=WAIT_MS)
    assert "ended from another device" in f.text_content("#login-error")
    assert saved_token(second) and saved_token(first) is None
    first.login_account("alice", "new-secret", "alice_")
    assert not first.errors and not second.errors, (first.errors, second.errors)
    assert not server.exceptions, server.exceptions
    bob.close()
