"""Formatting, terminal escapes, invalid UTF-8 and nicks across telnet, IRC and the web client,
over real sockets against `twistd -n chathub`, the page in Debian's Chromium (never a
Playwright download). Every wait is on a line or a selector, with a timeout."""
from __future__ import annotations

import re

import pytest

from tests.browser_helpers import Page, irc_client
from tests.support import LineClient, server_config

#: what an IRC client sent in the issue, and what each kind of client must make of it
IRC_LINE = "\x0304,01red on black\x03 plain \x02bold\x02 \x1dital\x1d"


@pytest.fixture
def room(tmp_path, twistd_server):
    """A server with telnet, IRC and HTTP listeners; an IRC user and a telnet user in #fmt."""
    server = twistd_server(server_config(tmp_path / "var", irc=True, http=True))
    ports = {kind: server.port(kind) for kind in ("line", "irc", "http")}
    irc = irc_client(ports["irc"], "ircuser")
    irc.send("JOIN #fmt")
    irc.expect(r" 366 ")
    telnet = LineClient(ports["line"])
    telnet.send("/nick tel")
    telnet.expect(r"^\* ")
    telnet.send("/join #fmt")
    telnet.expect(r"you joined #fmt")
    irc.expect(r"JOIN :?#fmt")
    yield ports, irc, telnet
    irc.close()
    telnet.close()


def test_irc_formatting_reaches_telnet_stripped_and_then_as_ansi(room):
    ports, irc, telnet = room
    # live lines only (``[#fmt] <nick>``): the join replay, read from history while the first
    # message is stored, may show it again with a time in front
    irc.send(f"PRIVMSG #fmt :{IRC_LINE}")
    assert telnet.expect(r"^\[#fmt\] <ircuser>").endswith("<ircuser> red on black plain bold ital")
    telnet.send("/color on")
    telnet.expect(r"colour is on")
    irc.send(f"PRIVMSG #fmt :{IRC_LINE}")
    line = telnet.expect(r"^\[#fmt\] <ircuser>")
    assert line.endswith(
        "<ircuser> \x1b[0;91;40mred on black\x1b[0m plain \x1b[0;1mbold\x1b[0m \x1b[0;3mital\x1b[0m"
    )
    # each code on its own: hex colour, underline, strikethrough, reverse, monospace, reset
    irc.send("PRIVMSG #fmt :\x04ff8800,000000hex\x0f \x1fu\x1f \x1es\x1e \x16r\x16 \x11m\x11 \x0312,99blue")
    line = telnet.expect(r"^\[#fmt\] <ircuser>")
    assert line.endswith(  # the lines seen, should it fail: each message must come once
        "\x1b[0;38;2;255;136;0;48;2;0;0;0mhex\x1b[0m \x1b[0;4mu\x1b[0m \x1b[0;9ms\x1b[0m "
        "\x1b[0;7mr\x1b[0m m \x1b[0;94mblue\x1b[0m"
    ), "\n".join(map(repr, telnet.seen))
    telnet.send("/color off")
    telnet.expect(r"colour is off")
    irc.send("PRIVMSG #fmt :\x04ff8800hex\x04 \x0399,01x \x03")
    assert telnet.expect(r"^\[#fmt\] <ircuser>").endswith("<ircuser> hex x ")
    irc.send("TOPIC #fmt :\x02big\x02 \x0304news")
    assert telnet.expect(r"set the topic").endswith("set the topic of #fmt: big news")
    telnet.send("/topic")
    assert telnet.expect(r"^\* topic of") == "* topic of #fmt: big news"


def test_telnet_formatting_reaches_irc_as_typed_and_ansi_is_stripped_whole(room):
    ports, irc, telnet = room
    telnet.send("\x033,4green\x03 \x02b\x02\x1di\x1d\x1fu\x1f\x1es\x1e\x11m\x11\x16r\x16\x04aabbccx\x0f")
    line = irc.expect(r"PRIVMSG #fmt")
    assert line.endswith(":\x033,4green\x03 \x02b\x02\x1di\x1d\x1fu\x1f\x1es\x1e\x11m\x11\x16r\x16\x04aabbccx\x0f")
    # CSI (colour, cursor), OSC (window title, BEL- and ST-ended), a lone ESC pair, a C1 CSI
    telnet.send("a\x1b[31mred\x1b[0m b\x1b[2;5Hc\x1b]0;title\x07d\x1b]8;;http://x\x1b\\e\x1bcf\u009b1mg")
    line = irc.expect(r"PRIVMSG #fmt")
    assert line.endswith(":ared bcdefg")
    # an escape cut off by the end of the line goes whole
    telnet.send("tail \x1b[38;5")
    assert irc.expect(r"PRIVMSG #fmt").endswith(":tail")


def test_invalid_utf8_from_telnet_arrives_as_replacement_characters(room):
    ports, irc, telnet = room
    telnet.send(b"bad \xff\xfe\xc3\x28 bytes\r\n")
    line = irc.expect(r"PRIVMSG #fmt")
    assert line.endswith(":bad \ufffd\ufffd\ufffd( bytes")


def test_irc_invalid_utf8_is_refused_with_a_reason(room):
    ports, irc, telnet = room
    irc.send(b"PRIVMSG #fmt :bad \xff\xfe\xc3\x28\r\n")
    assert "INVALID_UTF8" in irc.expect(r"FAIL PRIVMSG INVALID_UTF8")


def test_a_nick_with_invalid_characters_is_refused_with_the_reason(tmp_path, twistd_server):
    server = twistd_server(server_config(tmp_path / "var", irc=True))
    telnet = LineClient(server.port("line"))
    telnet.send(b"/nick a\xffb\r\n")
    refusal = telnet.expect(r"^! ")
    assert refusal.startswith("! a\ufffdb: Erroneous nickname: U+FFFD (bytes that were not UTF-8) cannot be in a nick")
    telnet.send("/nick a")
    telnet.expect(r"^\* ")
    telnet.send(b"/nick a\xffb\r\n")
    assert "a\ufffdb" in telnet.expect(r"^! ")
    telnet.send("/who")
    assert telnet.expect(r"^\*   ").startswith("*   a (")
    irc = LineClient(server.port("irc"))
    irc.send(b"NICK a\xc3\xa9b\r\n")
    assert re.search(r" 432 \* a\u00e9b :Erroneous nickname: 'é' cannot be in a nick", irc.expect(r" 432 "))
    irc.send(b"NICK a\xffb\r\n")
    assert "INVALID_UTF8" in irc.expect(r"FAIL NICK INVALID_UTF8")
    telnet.close()
    irc.close()


def test_web_client_renders_formatting_and_shots(browser, room, tmp_path):  # noqa: F811
    ports, irc, telnet = room
    url = f"http://127.0.0.1:{ports['http']}/"
    # screenshots for a person to look at (pytest keeps the last runs' tmp_path); the
    # committed ones are docs/screenshots/, made by tools/screenshots.py
    shots = tmp_path / "format-shots"
    shots.mkdir()
    pages = []
    # two pages (the server bounds WebSocket connections per address), each seen in both themes
    for width, height, scheme in ((1280, 800, "light"), (390, 844, "dark")):
        page = Page(browser, url, width, height)
        page.page.emulate_media(color_scheme=scheme)
        nick = f"web{len(pages)}"
        page.login(nick)
        page.join("#fmt")
        pages.append((page, width, height, scheme))
    irc.send(f"PRIVMSG #fmt :{IRC_LINE}")
    irc.send("PRIVMSG #fmt :\x04ff8800hex orange\x04 \x1funder\x1f \x1estruck\x1e \x16reversed\x16 \x11mono\x11 "
             "\x0312blue \x0300,01white on black\x0f \x0352extended")
    telnet.send("from telnet: \x033,4green on red\x03 and \x02bold\x02")
    web, *_ = pages[0]
    web.type("from the web: \x02bold\x02 and \x0313pink\x03")
    for page, width, height, scheme in pages + [(p, w, h, "dark" if s == "light" else "light") for p, w, h, s in pages]:
        page.page.emulate_media(color_scheme=scheme)
        text = page.wait_line("red on black")
        assert "\x03" not in text and "04,01" not in text and text.endswith("red on black plain bold ital")
        page.wait_line("extended")
        page.wait_line("from the web")
        page.wait_line("from telnet")
        spans = page.page.evaluate(
            """() => [...document.querySelectorAll('#message-list .text span')].map(s => {
                const c = getComputedStyle(s);
                return {text: s.textContent, cls: s.className, color: c.color, bg: c.backgroundColor,
                        weight: c.fontWeight, style: c.fontStyle, deco: c.textDecorationLine,
                        font: c.fontFamily};
            })"""
        )
        by = {s["text"]: s for s in spans}
        assert by["red on black"]["color"] == "rgb(255, 0, 0)" and by["red on black"]["bg"] == "rgb(0, 0, 0)"
        assert by["bold"]["weight"] == "700" and by["ital"]["style"] == "italic"
        assert by["hex orange"]["color"] == "rgb(255, 136, 0)"
        assert by["under"]["deco"] == "underline" and by["struck"]["deco"] == "line-through"
        assert "monospace" in by["mono"]["font"] and "f-reverse" in by["reversed"]["cls"]
        assert by["white on black"]["color"] == "rgb(255, 255, 255)"
        assert by["extended"]["color"] == "rgb(255, 0, 0)"  # palette 52
        assert by["green on red"]["bg"] == "rgb(255, 0, 0)"
        assert "f-fg13" in by["pink"]["cls"]
        # no control character reaches the page as a box
        body = page.page.inner_text("#message-list")
        assert not any(ord(c) < 0x20 and c not in "\n\t" for c in body)
        page.page.screenshot(path=str(shots / f"conversation-{width}x{height}-{scheme}.png"), animations="disabled")
        assert not page.errors
    assert irc.expect(r"PRIVMSG #fmt :from the web").endswith(":from the web: \x02bold\x02 and \x0313pink\x03")
    for page, *_ in pages:
        page.context.close()


def test_urls_become_links_and_nothing_else_does(browser, room):  # noqa: F811
    ports, irc, telnet = room
    page = Page(browser, f"http://127.0.0.1:{ports['http']}/", 1280, 800)
    page.login("reader")
    page.join("#fmt")
    irc.send("PRIVMSG #fmt :see https://en.wikipedia.org/wiki/Foo_(bar), and http://x.test/?q=1&r=<2>.")
    telnet.send("javascript:alert(1) xhttps://no.test/ https:// \x02https://bold.test/b\x02 <https://angle.test/>")
    page.wait_line("see https://")
    page.wait_line("javascript:")
    links = page.page.evaluate(
        """() => [...document.querySelectorAll('#message-list .text a')].map(a => ({
            text: a.textContent, href: a.getAttribute('href'), target: a.target, rel: a.rel,
            bold: a.closest('.f-bold') !== null}))"""
    )
    assert [(link["text"], link["href"]) for link in links] == [
        ("https://en.wikipedia.org/wiki/Foo_(bar)", "https://en.wikipedia.org/wiki/Foo_(bar)"),
        ("http://x.test/?q=1&r=", "http://x.test/?q=1&r="),
        ("https://bold.test/b", "https://bold.test/b"),
        ("https://angle.test/", "https://angle.test/"),
    ], links
    assert all(link["target"] == "_blank" and "noopener" in link["rel"] and "noreferrer" in link["rel"]
               for link in links)
    assert [link["bold"] for link in links] == [False, False, True, False]
    # the text around them is unchanged, the trailing comma outside the link
    assert page.wait_line("see https://").endswith("see https://en.wikipedia.org/wiki/Foo_(bar), and "
                                                   "http://x.test/?q=1&r=<2>.")
    assert not page.errors, page.errors
    page.context.close()
