"""With the disk full, every request gets one answer, and the fault is logged once.

The attack on a real SQLite store whose disk filled up: a chathub.v1 sender got a
``storage_failed`` error and then ``ok`` with a message id for the same request (1,639 of
1,800 acknowledged messages were not in the database), and each refused message logged
two critical tracebacks. Here the store's own write connection really runs out of pages
(``PRAGMA max_page_count``, as tests/test_store_sqlite.py does), senders on every
protocol talk into it, and an honest IRC user watches.
"""
from __future__ import annotations

import pytest_twisted
from twisted.logger import LogLevel

from chathub.events import Kind, Source
from chathub.store.interfaces import StorageError
from tests.support import LogCapture, history_server

CAPS = ["batch", "echo-message", "labeled-response", "message-tags", "standard-replies"]


def _max_pages(txn, pages):
    txn.execute("PRAGMA page_count")
    count = txn.fetchone()[0]
    txn.execute(f"PRAGMA max_page_count = {pages or count}")


async def fill_the_disk(server) -> None:
    """No page may be added to the database any more; fill the free space there is, with
    ever smaller messages into #lobby carrying the hub's own (increasing) ids, so that
    the pages the next messages would go to are full too."""
    store = server.store
    await store._write_pool.runInteraction(_max_pages, None)
    source = Source(nick="filler", user="filler", host="example.test")
    for size in (4000, 400, 40, 1):
        for _ in range(1000):
            try:
                await store.append(server.hub.ids.make(Kind.MESSAGE, source, "#lobby", "x" * size))
            except StorageError:
                break
        else:
            raise AssertionError("the database never filled up")


async def free_the_disk(store) -> None:
    await store._write_pool.runInteraction(_max_pages, 1_000_000)


async def synced_json(client, tag: str) -> list:
    """Everything the JSON client received up to the answer of an ``away`` (answered after
    delivery, so after anything queued before it)."""
    client.send_json({"type": "away", "text": tag, "ref": tag})
    await client.expect({"type": "ok", "ref": tag})
    return list(client.received)


@pytest_twisted.ensureDeferred
async def test_one_answer_per_request_and_one_log_episode_when_the_disk_is_full(tmp_path):
    server = await history_server(tmp_path)
    try:
        watcher = await server.irc("watcher", rooms=["#lobby"])
        modern = await server.irc("modern", *CAPS, rooms=["#lobby"])
        plain = await server.irc("plain", rooms=["#lobby"])
        tel = await server.telnet("tel", rooms=["#lobby"])
        web = await server.ws("web", rooms=["#lobby"])
        with LogCapture() as filling:
            await fill_the_disk(server)
        # the fault is logged with its traceback when a run of failures starts (filling the
        # last free space, the disk was full, then not for a smaller message, then full)
        assert filling.failures and all("writes are failing" in e["log_format"] for e in filling.failures)
        assert len(server.take_tracebacks("database or disk is full")) == len(filling.failures)

        with LogCapture() as log:
            # chathub.v1: an error instead of the ok, once per request (two lines: still one)
            for i in range(50):
                web.send_json({"type": "message", "target": "#lobby", "text": f"lost {i}", "ref": f"j{i}"})
            web.send_json({"type": "message", "target": "#lobby", "text": "lost a\nlost b", "ref": "two"})
            web.send_json({"type": "message", "target": "#lobby", "text": "lost, no ref"})
            seen = await synced_json(web, "sync1")
            answers = [m for m in seen if m.get("type") in ("ok", "error") and m.get("request") == "message"]
            refs = [m.get("ref") for m in answers]
            assert refs == [f"j{i}" for i in range(50)] + ["two", None]  # one each, in order
            assert [m for m in answers if (m["type"], m.get("code"), m.get("target")) != ("error", "storage_failed", "#lobby")] == []
            assert "could not be stored" in answers[0]["message"]
            assert not any(m.get("type") == "message" and "lost" in m.get("text", "") for m in seen)

            # IRC with echo-message and labeled-response: the labeled answer is the FAIL, no echo
            (answer,) = await modern.labeled("PRIVMSG #lobby :lost irc")
            assert answer.command == "FAIL" and answer.params[:3] == ["PRIVMSG", "STORAGE_FAILED", "#lobby"]
            assert not any(l.command == "PRIVMSG" and l.params[-1] == "lost irc" for l in modern.lines)
            # IRC without capabilities: the server's notice is the only answer
            answers = await plain.roundtrip("PRIVMSG #lobby :lost plain")
            notices = [l for l in answers if l.command in ("NOTICE", "PRIVMSG", "FAIL")]
            assert [l.command for l in notices] == ["NOTICE"]
            assert "could not be stored" in notices[0].params[-1]

            # telnet: an error line instead of the confirmation of a private message
            tel.send("/msg watcher lost private")
            assert (await tel.expect_re(r"^! ")).startswith("! Your message to watcher was not delivered")
            tel.send("lost telnet")
            assert (await tel.expect_re(r"^! ")).startswith("! Your message to #lobby was not delivered")
            assert not any(line.startswith("-> watcher") for line in tel.texts)

            # and then not again, nor anything else, for any of the refused messages
            assert [e for e in log.events if e["log_level"] >= LogLevel.warn] == []

            await free_the_disk(server.store)
            web.send_json({"type": "message", "target": "#lobby", "text": "kept json", "ref": "k"})
            kept = await web.expect(lambda m: m.get("ref") == "k")
            assert kept["type"] == "ok" and kept["id"]
            recovery = await log.wait_for("writes succeed again")
            assert recovery["count"] >= 50 + 2 + 1 + 1 + 1 + 2  # every refused message was counted
            echo = await modern.labeled("PRIVMSG #lobby :kept irc")
            assert [(l.command, l.params[-1]) for l in echo] == [("PRIVMSG", "kept irc")]
            tel.send("/msg watcher kept private")
            assert await tel.expect_re(r"^-> watcher") == "-> watcher: kept private"
            await watcher.expect_re(r"PRIVMSG #lobby :kept irc$")
        assert log.failures == []

        # what the watcher saw and what the database holds: the kept messages, no lost one
        assert not any("lost" in line for line in watcher.texts)
        stored = {e.id: e.text for e in await server.store.latest("watcher", "#lobby", None, 1000)}
        assert kept["id"] in stored
        assert not any("lost" in text for text in stored.values())
        assert {"kept json", "kept irc"} <= set(stored.values())
    finally:
        await server.stop()
