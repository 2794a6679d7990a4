"""The bundled web client in Debian's Chromium (Playwright, never `playwright install`), against
`twistd -n chathub` in a subprocess, together with IRC and telnet users on the same hub.

The server runs in its own process, so Playwright's blocking API never stalls a reactor.
Every wait is on an event (a selector, a line, a log line) with a timeout.
"""
from __future__ import annotations

from tests.browser_helpers import WAIT_MS, Page, irc_client, refused_reconnect
from tests.support import LineClient


def test_two_browsers_and_an_irc_client_share_a_room(browser, hub_ports):
    server, ports, start_again = hub_ports
    url = f"http://127.0.0.1:{ports['http']}/"
    alice = Page(browser, url, 1280, 800)
    bob = Page(browser, url, 390, 844)
    # alice has an account, so the #lobby she makes is hers and outlives the restart with its
    # history (a guest's room ends with it, and the next #lobby reads none of its past)
    alice.register("alice", "alice's secret")
    bob.login("bob")
    alice.join("#lobby")
    bob.join("#lobby")

    alice.type("hello bob")
    assert "hello bob" in bob.wait_line("hello bob")
    bob.type("hi alice, from my phone")
    assert "alice" in alice.wait_line("from my phone")
    bob.type("/me waves")
    alice.page.locator("#message-list li.action", has_text="waves").wait_for(timeout=WAIT_MS)
    # markup typed by a user is shown as text, never run or rendered
    alice.type('<img src=x onerror="document.title=1"> <b>bold?</b>')
    assert "<b>bold?</b>" in bob.wait_line("bold?")
    assert bob.page.locator("#message-list img, #message-list b").count() == 0

    # the member list shows presence and protocol
    irc = irc_client(ports["irc"], "carl")
    irc.send("JOIN #lobby")
    irc.expect(r"JOIN :?#lobby")
    alice.page.locator("#member-list li", has_text="carl").wait_for(timeout=WAIT_MS)
    assert "irc" in alice.page.locator("#member-list li", has_text="carl").inner_text()

    alice.type("hello IRC")
    line = irc.expect(r"PRIVMSG #lobby :hello IRC")
    assert line.startswith(":alice!")
    irc.send("PRIVMSG #lobby :hi browsers, IRC here")
    assert "carl" in alice.wait_line("IRC here")
    assert "carl" in bob.wait_line("IRC here")

    # private conversation: an unread badge until it is opened
    irc.send("PRIVMSG alice :psst alice")
    badge = alice.page.locator("#private-list li", has_text="carl").locator(".badge")
    badge.wait_for(timeout=WAIT_MS)
    assert badge.inner_text() == "1"
    alice.page.locator("#private-list li button", has_text="carl").click()
    alice.wait_line("psst alice")
    alice.type("/msg carl secret reply")
    irc.expect(r"PRIVMSG carl :secret reply")
    alice.page.locator("#room-list li button", has_text="#lobby").click()
    alice.page.wait_for_selector("#conv-name:text-is('#lobby')", timeout=WAIT_MS)

    irc.send("AWAY :getting coffee")
    alice.page.locator("#member-list li.away", has_text="carl").wait_for(timeout=WAIT_MS)

    alice.screenshot("browser-desktop.png")
    bob.screenshot("browser-phone.png")
    bob.page.click("#toggle-sidebar")
    bob.screenshot("browser-phone-rooms.png")
    assert alice.errors == [] and bob.errors == []
    irc.close()

    # the server restarts: the page reconnects by itself, logs in, rejoins and catches up
    server.stop()
    assert server.exceptions == []
    alice.page.wait_for_selector("#banner:not([hidden])", timeout=WAIT_MS)
    server = start_again()
    alice.page.wait_for_selector("#banner", state="hidden", timeout=30_000)
    bob.page.wait_for_selector("#banner", state="hidden", timeout=30_000)
    alice.page.locator("#member-list li", has_text="bob").wait_for(timeout=WAIT_MS)
    # while the server was down, Chromium logged each refused reconnect: expected, and the
    # only thing the downtime may add
    for page in (alice, bob):
        page.errors = [e for e in page.errors if not refused_reconnect(e, url)]
    bob.type("back after the restart")
    assert "bob" in alice.wait_line("back after the restart")

    # a newcomer registers an account from the form, joins, and reads what was said before
    # the restart (history from the store)
    dave = Page(browser, url, 390, 844)
    dave.register("dave", "dave's secret")
    dave.join("#lobby")
    assert "alice" in dave.wait_line("hello IRC")
    assert "bob" in dave.wait_line("back after the restart")
    dave.screenshot("browser-phone-history.png")
    assert alice.errors == [] and bob.errors == [] and dave.errors == []
    assert server.exceptions == []


def test_irc_over_websocket_page_chats_with_telnet_user(browser, hub_ports):
    server, ports, _ = hub_ports
    # the page's CSP forbids eval, which Playwright's wait_for_function needs; this page is
    # a harness for a hand-written IRC client, not the bundled client
    page = Page(browser, f"http://127.0.0.1:{ports['http']}/", 800, 600, bypass_csp=True).page
    page.evaluate(
        """(url) => {
            window.ircLines = [];
            window.ircProtocol = null;
            const ws = new WebSocket(url, ['text.ircv3.net']);
            window.ircSocket = ws;
            ws.onopen = () => {
                window.ircProtocol = ws.protocol;
                ws.send('NICK webirc');
                ws.send('USER webirc 0 * :IRC in a browser');
            };
            ws.onmessage = (e) => {
                window.ircLines.push(e.data);
                if (e.data.startsWith('PING ')) ws.send('PONG ' + e.data.slice(5));
            };
        }""",
        f"ws://127.0.0.1:{ports['http']}/ws",
    )
    page.wait_for_function("window.ircLines.some(l => l.split(' ')[1] === '001')", timeout=WAIT_MS)
    assert page.evaluate("window.ircProtocol") == "text.ircv3.net"
    assert page.evaluate("window.ircLines.every(l => !l.endsWith('\\r\\n') && !l.endsWith('\\n'))")

    telnet = LineClient(ports["line"])
    telnet.send("/nick tom")
    telnet.expect(r"tom")
    telnet.send("/join #ops")
    telnet.expect(r"#ops")
    page.evaluate("window.ircSocket.send('JOIN #ops')")
    page.wait_for_function("window.ircLines.some(l => l.includes(' 366 '))", timeout=WAIT_MS)
    telnet.expect(r"webirc")

    page.evaluate("window.ircSocket.send('PRIVMSG #ops :hello telnet, this is a browser speaking IRC')")
    assert "hello telnet" in telnet.expect(r"hello telnet")
    telnet.send("hi browser, telnet here")
    page.wait_for_function(
        "window.ircLines.some(l => l.startsWith(':tom!') && l.includes('PRIVMSG #ops :hi browser, telnet here'))",
        timeout=WAIT_MS,
    )
    telnet.send("/msg webirc private hello")
    page.wait_for_function("window.ircLines.some(l => l.includes('PRIVMSG webirc :private hello'))", timeout=WAIT_MS)
    telnet.close()
    assert server.exceptions == []
