"""Screenshots of the bundled web client showing one formatted conversation, for docs/.

    .venv/bin/python tools/screenshots.py [--out docs/screenshots]

Starts `twistd -n chathub` on ports the system picks (in a temporary directory), makes a
conversation in #release between a telnet user (tom), an IRC user (bob) and the web user
whose page is shot (alice, registered from the page): bold, colours, italics, a code span, a link, a message long
enough to be folded with "show more", and /me from each protocol. Saves
chat-desktop-{light,dark}.png (1280x800) and chat-phone-{light,dark}.png (390x844) into the
output directory. Needs Debian's chromium (CHATHUB_CHROMIUM, default /usr/bin/chromium),
driven by Playwright; exits non-zero if the page logged an error.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.browser_helpers import CHROMIUM, CHROMIUM_ARGS, Page, irc_client  # noqa: E402
from tests.support import LineClient, TwistdServer, server_config  # noqa: E402

ROOM = "#release"
#: (file name, width, height, colour scheme)
SHOTS = [
    ("chat-desktop-light.png", 1280, 800, "light"),
    ("chat-desktop-dark.png", 1280, 800, "dark"),
    ("chat-phone-light.png", 390, 844, "light"),
    ("chat-phone-dark.png", 390, 844, "dark"),
]
CHECKLIST = "\n".join(
    ["Release checklist for 2.4:"]
    + [f"{n}. {step}" for n, step in enumerate([
        "freeze main", "run scripts/test on both backends", "update docs/protocol.md",
        "tag the release", "build the packages", "smoke-test telnet, IRC and the web client",
        "upgrade the staging server", "watch /metrics for an hour", "announce on #release",
        "upgrade production", "close the milestone", "thank everyone", "write the retrospective",
        "plan 2.5",
    ], 1)]
)


def conversation(ports: dict[str, int], page: Page) -> list[LineClient]:
    """alice (``page``, in #release already) talks with tom over telnet and bob over IRC;
    returns their clients, still in the room (the members panel lists them)."""
    tom = LineClient(ports["line"])
    tom.send("/nick tom")
    tom.expect(r"^\* ")
    tom.send(f"/join {ROOM}")
    tom.expect(rf"you joined {ROOM}")
    bob = irc_client(ports["irc"], "bob")
    bob.send(f"JOIN {ROOM}")
    bob.expect(r" 366 ")
    page.page.locator("#member-list li", has_text="bob").wait_for()

    page.type("/topic Release 2.4 \x02planning\x02 — see https://example.org/wiki/release")
    tom.expect(r"topic")
    tom.send("morning! the \x02release notes\x02 are in the wiki, \x1dplease\x1d read them first")
    bob.expect(r"release notes")
    bob.send(f"PRIVMSG {ROOM} :status from CI: \x0303,01 passing \x03 on SQLite, \x0304failing\x03 on "
             "PostgreSQL, \x0307flaky\x03 on the cluster job")
    bob.send(f"PRIVMSG {ROOM} :the failure is in \x11test_store_postgres.py::test_upgrade\x11 — "
             "https://ci.example.org/jobs/4711")
    tom.expect(r"test_upgrade")
    tom.send("/me looks at the failing job")
    page.type("found it: \x1dthe migration\x1d ran twice; fix in \x11scripts/test\x11, \x02\x0312merging now\x0f")
    bob.expect(r"merging now")
    page.type(CHECKLIST)
    bob.expect(r"plan 2\.5")
    bob.send(f"PRIVMSG {ROOM} :\x01ACTION \x0306cheers\x03 from IRC\x01")
    tom.send("\x0301,08thanks alice!\x03 \x1fI'll update the wiki\x1f")
    page.wait_line("update the wiki")
    # and a private word from IRC: the sidebar lists the conversation, with its unread count
    bob.send("PRIVMSG alice :can you look at my \x02PR\x02 after the release?")
    page.page.locator("#private-list li.unread", has_text="bob").wait_for(state="attached")
    return [tom, bob]


def take(browser, out: Path, workdir: Path) -> list[Path]:
    """Start a server under ``workdir``, make the conversation, save the shots in ``out``."""
    server = TwistdServer(workdir, server_config(workdir / "var", irc=True, http=True)).start()
    try:
        ports = {kind: server.port(kind) for kind in ("line", "irc", "http")}
        page = Page(browser, f"http://127.0.0.1:{ports['http']}/", 1280, 800)
        page.register("alice", "alice's secret")  # an account: the sidebar shows its Account box
        page.join(ROOM)
        others = conversation(ports, page)
        page.page.wait_for_selector("#banner", state="hidden")  # "Account alice registered" goes by itself
        out.mkdir(parents=True, exist_ok=True)
        saved = []
        for name, width, height, scheme in SHOTS:
            page.page.set_viewport_size({"width": width, "height": height})
            page.page.emulate_media(color_scheme=scheme)
            box = page.page.locator("#messages")
            box.evaluate("box => { box.scrollTop = box.scrollHeight; }")
            page.page.wait_for_function(
                "() => { const b = document.getElementById('messages');"
                " return b.scrollHeight - b.scrollTop - b.clientHeight < 2; }"
            )
            page.page.mouse.move(1, 1)  # no message under the pointer (its hover background)
            path = out / name
            page.page.screenshot(path=str(path), animations="disabled")
            saved.append(path)
        if page.errors:
            raise RuntimeError(f"the page logged errors: {page.errors}")
        if server.exceptions:
            raise RuntimeError(f"the server logged tracebacks: {server.exceptions}")
        page.context.close()
        for client in others:
            client.close()
        return saved
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots", help="where the PNGs go")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="chathub-shots-") as tmp, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for path in take(browser, args.out, Path(tmp)):
                print(path)
        finally:
            browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
