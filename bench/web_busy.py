"""How long a busy room takes to appear in the bundled web client (issue 13, item 9).

Starts ``twistd -n chathub`` (telnet and HTTP on 127.0.0.1, the loopback exempt from flood
control), opens the web client in Debian's Chromium through Playwright (never
``playwright install``), logs in and joins a room; a telnet bridge then writes N lines at once.
Prints, over ``--runs`` runs:

- **after last frame**: from the WebSocket frame carrying the last message reaching the browser
  (Chromium's own network event, through Playwright) to that message's line being in the page;
  the figure the issue's target is about (5,000 messages within 2 s of the last one arriving);
- **paste to last shown**: from the bridge's write to the last line in the page;
- the longest task the page ran meanwhile and the sum of its tasks over 50 ms (PerformanceObserver
  ``longtask``: how busy the page's thread was), the input's
  responsiveness, and how many items the message list holds at the end.

    .venv/bin/python bench/web_busy.py --messages 5000 --runs 3

Run it on a quiet machine: the figures are wall-clock times.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support import LineClient, TwistdServer, server_config  # noqa: E402

CHROMIUM = os.environ.get("CHATHUB_CHROMIUM") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
ROOM = "#busy"

# the time each line is added to the message list, and the page's long tasks
WATCH = """
(last) => {
  window.__bench = { shown: 0, longest: 0, busy: 0 };
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      window.__bench.longest = Math.max(window.__bench.longest, entry.duration);
      window.__bench.busy += entry.duration;
    }
  }).observe({ type: "longtask", buffered: false });
  new MutationObserver((records) => {
    for (const record of records) for (const node of record.addedNodes) {
      if (node.textContent && node.textContent.includes(last)) window.__bench.shown = Date.now();
    }
  }).observe(document.getElementById("message-list"), { childList: true });
}
"""


def run_once(browser, http_port: int, line_port: int, irc_port: int, count: int, run: int) -> dict:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    first_frame: list[float] = []
    last_frame: list[float] = []
    first, last = f"flood {run}-00000", f"flood {run}-{count - 1:05d}"

    def frame(payload) -> None:
        text = str(payload)
        if first in text:
            first_frame.append(time.time())
        elif last in text:
            last_frame.append(time.time())

    page.on("websocket", lambda ws: ws.on("framereceived", frame))
    page.goto(f"http://127.0.0.1:{http_port}/")
    page.wait_for_selector("#login-button:not([disabled])")
    page.fill("#login-nick", f"reader{run}")
    page.click("#login-button")
    page.wait_for_selector("#chat-view:not([hidden])")
    page.fill("#input", f"/join {ROOM}")
    page.press("#input", "Enter")
    page.wait_for_selector(f"#conv-name:text-is('{ROOM}')")
    page.evaluate(WATCH, last)
    # an IRC client in the room: when the server had sent everything
    irc = LineClient(irc_port, timeout=60)
    irc.send(f"NICK ircref{run}")
    irc.send(f"USER ircref{run} 0 * :reference")
    irc.expect(r" 001 ")
    irc.send(f"JOIN {ROOM}")
    irc.expect(r" 366 ")

    bridge = LineClient(line_port, timeout=60)
    bridge.send(f"/nick bridge{run}")
    bridge.expect(r"^\* you are bridge")
    bridge.send(f"/join {ROOM}")
    bridge.expect(rf"^\* you joined {ROOM}$")
    page.locator("#member-list li", has_text=f"bridge{run}").wait_for()
    lines = b"".join(f"flood {run}-{i:05d}\r\n".encode() for i in range(count))
    start = time.time()
    bridge.send(lines)
    irc.expect(rf"PRIVMSG {ROOM} :{last}$", timeout=120)
    irc_done = time.time()
    page.locator("#message-list li", has_text=last).wait_for(timeout=120_000)
    # the input still takes a keystroke at once after the flood
    typed = time.time()
    page.fill("#input", "still typing")
    input_ms = (time.time() - typed) * 1000
    bench = page.evaluate("window.__bench")
    items = page.locator("#message-list li:not(.day)").count()
    bridge.close()
    irc.close()
    context.close()
    shown = bench["shown"] / 1000
    return {
        "after_last_frame_s": shown - last_frame[0],
        "paste_to_last_shown_s": shown - start,
        "paste_to_irc_client_s": irc_done - start,
        "first_to_last_frame_s": last_frame[0] - first_frame[0],
        "longest_task_ms": bench["longest"],
        "long_tasks_total_s": bench["busy"] / 1000,
        "fill_input_ms": input_ms,
        "list_items": items,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        extra = '[limits]\nflood_exempt = ["127.0.0.1"]\nsendq_bytes = 16777216\n'
        server = TwistdServer(Path(tmp) / "server", server_config(Path(tmp) / "var", extra, irc=True, http=True)).start()
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                results = [run_once(browser, server.port("http"), server.port("line"), server.port("irc"),
                                    options.messages, run)
                           for run in range(options.runs)]
                browser.close()
        finally:
            server.stop()
    for key in results[0]:
        values = [r[key] for r in results]
        print(f"{key:>24}: median {statistics.median(values):.3f}  runs {', '.join(f'{v:.3f}' for v in values)}")


if __name__ == "__main__":
    main()
