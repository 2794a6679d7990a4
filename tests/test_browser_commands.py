"""Issue 13, points 7 and 8 in Chromium: the register form refuses a short password in
place, the slash commands telnet and the web client share work the same in both, and a
guest whose nick is taken is told which nick it got."""
from __future__ import annotations

import pytest

from tests.browser_helpers import WAIT_MS, Page, refused_reconnect
from tests.support import LineClient, server_config


@pytest.fixture
def ports(tmp_path, twistd_server):
    server = twistd_server(server_config(tmp_path / "var", http=True))
    yield {kind: server.port(kind) for kind in ("line", "http")}
    assert server.exceptions == []


def telnet(port: int, nick: str, room: str = "") -> LineClient:
    client = LineClient(port)
    client.send(f"/nick {nick}")
    client.expect(rf"^\* you are {nick}, ")
    if room:
        client.send(f"/join {room}")
        client.expect(rf"^\* you joined {room}$")
    return client


def test_register_form_refuses_a_short_password_in_place(browser, ports):  # noqa: F811
    page = Page(browser, f"http://127.0.0.1:{ports['http']}/", 1280, 800)
    p = page.page
    p.wait_for_selector("#tab-register:not([hidden])", timeout=WAIT_MS)
    p.click("#tab-register")
    assert "at least 4 characters" in p.text_content("#login-hint")  # the rule, before sending
    p.fill("#login-nick", "rita")
    p.fill("#login-password", "abc")
    p.click("#login-button")
    p.wait_for_selector("#login-error:not([hidden])", timeout=WAIT_MS)
    assert p.text_content("#login-error") == "Password too short: at least 4 characters."
    assert p.is_hidden("#chat-view")  # not logged in as a guest meanwhile
    # nobody signed on as rita: a telnet user may take the nick
    telnet(ports["line"], "rita").close()
    page.register("rosa", "long enough")
    assert page.errors == []


def test_slash_commands_common_to_telnet_and_the_web_client(browser, ports):  # noqa: F811
    page = Page(browser, f"http://127.0.0.1:{ports['http']}/", 1280, 800)
    page.login("gina")
    page.join("#s")
    page.join("#r")  # gina makes #r, so she operates it (topics are for operators: +t)
    tom = telnet(ports["line"], "tom", "#r")
    tom.send("/join #s")  # a room left shared after /part #r, where tom sees gina quit
    tom.expect(r"^\* you joined #s$")

    page.type("/topic all about r")
    tom.expect(r"^\* gina set the topic of #r: all about r$")
    page.type("/topic")  # shows the topic, as on telnet; never clears it
    page.wait_line("Topic: all about r")
    page.type("/me waves")
    tom.expect(r"^\[#r\] \* gina waves$")
    page.type("/msg tom psst")
    tom.expect(r"^<- gina: psst$")
    # the private conversation is open: its members panel shows both parties, not nothing
    page.page.wait_for_selector("#conv-name:text-is('tom')", timeout=WAIT_MS)
    members = page.page.locator("#member-list li")
    members.filter(has_text="tom").wait_for(timeout=WAIT_MS)
    assert members.count() == 2 and "gina" in members.first.inner_text()
    page.type("/away lunch")
    page.wait_line("You are away (lunch)")
    tom.send("/who #r")
    tom.expect(r"gina \(ws\) away: lunch$")
    page.type("/away")  # alone: back, as on telnet
    page.wait_line("You are back")
    tom.send("/who #r")
    tom.expect(r"gina \(ws\) here$")
    page.type("/nick gina2")
    tom.expect(r"^\* gina is now known as gina2$")
    page.type("/register ginas-secret")
    page.page.wait_for_selector("#me:text-is('gina2 ✓')", timeout=WAIT_MS)
    page.type("/part #r see you")
    tom.expect(r"^\* gina2 left #r \(see you\)$")
    page.type("/quit bye all")
    tom.expect(r"^\* gina2 quit \(bye all\)$")
    assert page.errors == []
    tom.close()


def test_a_guest_whose_nick_is_taken_is_told_which_it_got(browser, ports):  # noqa: F811
    tom = telnet(ports["line"], "tom")
    page = Page(browser, f"http://127.0.0.1:{ports['http']}/", 1280, 800)
    p = page.page
    p.wait_for_selector("#login-button:not([disabled])", timeout=WAIT_MS)
    p.fill("#login-nick", "tom")
    p.click("#login-button")
    p.wait_for_selector("#chat-view:not([hidden])", timeout=WAIT_MS)
    assert p.text_content("#me") == "tom_"
    p.wait_for_selector("#banner:not([hidden])", timeout=WAIT_MS)
    assert p.text_content("#banner") == "tom is in use, so you are tom_ (/nick to change)"
    assert page.errors == []
    tom.close()


def test_reconnect_banner_has_retry_now_and_leaves_the_header_visible(browser, hub_ports):  # noqa: F811
    server, ports, start_again = hub_ports
    url = f"http://127.0.0.1:{ports['http']}/"
    page = Page(browser, url, 390, 844)
    page.login("nora")
    page.join("#r")
    p = page.page
    server.stop()
    p.wait_for_selector("#retry-now", timeout=WAIT_MS)
    banner, header = p.locator("#banner").bounding_box(), p.locator("#conv-name").bounding_box()
    assert banner["y"] >= header["y"] + header["height"], (banner, header)  # below the header
    start_again()
    # at once rather than after the rest of the backoff; the page may have reconnected by
    # itself already (its first retries come after 1 s, 2 s), so the click may find no button
    p.evaluate("document.getElementById('retry-now')?.click()")
    p.wait_for_selector("#banner", state="hidden", timeout=WAIT_MS)
    p.locator("#member-list li", has_text="nora").wait_for(timeout=WAIT_MS)
    assert [e for e in page.errors if not refused_reconnect(e, url)] == []


def test_empty_pane_after_login_shows_a_hint_and_the_room_list(browser, ports):  # noqa: F811
    page = Page(browser, f"http://127.0.0.1:{ports['http']}/", 1280, 800)
    page.login("olga")
    p = page.page
    p.wait_for_selector("#empty-hint:not([hidden])", timeout=WAIT_MS)
    assert "/join #room" in p.text_content("#empty-hint")
    p.click("#empty-browse")
    p.wait_for_selector("#rooms-dialog[open]", timeout=WAIT_MS)
    p.keyboard.press("Escape")
    page.join("#r")
    assert p.is_hidden("#empty-hint")
    assert page.errors == []


def test_default_rooms_are_joined_after_a_first_login(browser, tmp_path, twistd_server):  # noqa: F811
    server = twistd_server(server_config(tmp_path / "var", '[websocket]\ndefault_rooms = ["#lobby", "#help"]\n', http=True))
    page = Page(browser, f"http://127.0.0.1:{server.port('http')}/", 1280, 800)
    page.login("pat")
    page.page.wait_for_selector("#conv-name:text-is('#lobby')", timeout=WAIT_MS)
    page.page.locator("#room-list li", has_text="#help").wait_for(timeout=WAIT_MS)
    assert page.errors == []


def test_a_rename_keeps_the_web_clients_room_and_its_lines(browser, ports):  # noqa: F811
    """A room renamed by a telnet operator keeps its tab, lines and members in the web
    client under the new name, and stays the open conversation; the web client's own
    /rename works as telnet's does."""
    tom = telnet(ports["line"], "tom", "#old")  # tom makes #old: its operator
    page = Page(browser, f"http://127.0.0.1:{ports['http']}/", 1280, 800)
    page.login("gina")
    page.join("#old")
    page.type("said before")
    tom.expect(r"^\[#old\] <gina> said before$")
    tom.send("/rename #new tidier")
    tom.expect(r"^\* you renamed #old to #new$")
    p = page.page
    p.wait_for_selector("#conv-name:text-is('#new')", timeout=WAIT_MS)
    page.wait_line("tom renamed #old to #new (tidier)")
    page.wait_line("said before")  # the lines stayed with the room
    p.locator("#member-list li", has_text="tom").wait_for(timeout=WAIT_MS)
    p.locator("#room-list li", has_text="#new").wait_for(timeout=WAIT_MS)
    assert p.locator("#room-list li", has_text="#old").count() == 0
    page.type("said after")  # to the room's new name
    tom.expect(r"^\[#new\] <gina> said after$")
    # gina, made operator, renames it back from the browser
    tom.send("/mode #new +o gina")
    tom.expect(r"you set mode \+o gina on #new")
    page.type("/rename #old back again")
    tom.expect(r"^\* gina renamed #new to #old \(back again\)$")
    p.wait_for_selector("#conv-name:text-is('#old')", timeout=WAIT_MS)
    assert page.errors == []
