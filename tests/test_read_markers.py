"""Read markers kept in the store (``chathub.store.sql.read_markers``,
``chathub.hub.readmarkers``): an account's markers (IRC MARKREAD, chathub.v1 markread)
were kept in the hub's memory only, so a restart lost every one, and in a cluster a login
to another node found none. Now an account's marker is written as it moves and read back
at the account's next login, before its rooms are joined again (each rejoin shows it). A
guest's still lives with its connection."""
from __future__ import annotations

import pytest_twisted

from chathub.config import Config
from chathub.events import iso_time
from tests.store_fixtures import *  # noqa: F401,F403 (fixtures)
from tests.support import ALL_CAPS, LOOPBACK, HubServer, irc_user, join_irc, until

CAPS = (*ALL_CAPS, "draft/read-marker")


@pytest_twisted.ensureDeferred
async def test_the_store_keeps_each_accounts_latest_markers_never_moving_one_back(store_factory):
    store = await store_factory()
    await store.save_read_marker("Alice", "#Room", 100.0, moved=1.0, keep=3)
    await store.save_read_marker("alice", "#room", 50.0, moved=2.0, keep=3)  # back: stays at 100
    await store.save_read_marker("alice", "Bob", 70.0, moved=3.0, keep=3)
    await store.save_read_marker("carol", "#room", 10.0, moved=4.0, keep=3)
    assert await store.read_markers("ALICE") == {"#room": 100.0, "bob": 70.0}
    # past ``keep``, the markers moved longest ago go
    await store.save_read_marker("alice", "#two", 80.0, moved=5.0, keep=3)
    await store.save_read_marker("alice", "#three", 90.0, moved=6.0, keep=3)
    assert await store.read_markers("alice") == {"bob": 70.0, "#two": 80.0, "#three": 90.0}
    assert list(await store.read_markers("alice")) == ["bob", "#two", "#three"]  # most recently moved last
    assert await store.read_markers("carol") == {"#room": 10.0}
    assert await store.read_markers("nobody") == {}
    # a renamed room's markers follow it; an account with one of both names keeps the later
    await store.save_read_marker("carol", "#three", 95.0, moved=7.0, keep=3)
    await store.rename_room("#two", "#Three")
    assert await store.read_markers("alice") == {"bob": 70.0, "#three": 90.0}
    await store.rename_room("#three", "#four")
    assert await store.read_markers("alice") == {"bob": 70.0, "#four": 90.0}
    assert await store.read_markers("carol") == {"#room": 10.0, "#four": 95.0}
    # what an account read goes with it: a later account of the name does not see it
    await store.create_account("carol", "$argon2id$not-a-real-hash")
    await store.delete_account("Carol")
    assert await store.read_markers("carol") == {}
    await store.close()


@pytest_twisted.ensureDeferred
async def test_an_accounts_marker_is_shown_after_a_restart_and_a_guests_is_not(tmp_path):
    server = await HubServer.stored(tmp_path)
    await server.accounts.create_account("alice", "correct-horse")
    try:
        alice = await irc_user(server, "alice", CAPS, password="correct-horse", rooms=["#room"])
        guest = await irc_user(server, "guest", CAPS, rooms=["#room"])
        for client in (alice, guest):
            client.send("MARKREAD #room timestamp=2026-01-02T03:04:05.000Z")
            await client.expect_re(r" MARKREAD #room timestamp=2026-01-02T03:04:05.000Z$")
        alice.send("MARKREAD bob timestamp=2026-01-02T03:04:06.000Z")
        await alice.expect_re(r" MARKREAD bob timestamp=2026-01-02T03:04:06.000Z$")
    finally:
        await server.stop()
    again = await HubServer.stored(tmp_path)
    try:
        # the kept room is joined again at login, its marker before 366
        alice = await irc_user(again, "alice", CAPS, password="correct-horse")
        await alice.expect_count(r" 366 alice #room ")
        shown = [line.text for line in alice.lines if line.command in ("MARKREAD", "366")]
        assert shown[-2:] == [":chathub.local MARKREAD #room timestamp=2026-01-02T03:04:05.000Z",
                              ":chathub.local 366 alice #room :End of /NAMES list"], shown
        alice.send("MARKREAD bob")
        await alice.expect_re(r" MARKREAD bob timestamp=2026-01-02T03:04:06.000Z$")
        guest = await irc_user(again, "guest", CAPS)
        await join_irc(guest, "#room")
        assert [line for line in guest.lines if line.command == "MARKREAD"][-1].params[1] == "*"
        assert iso_time(again.hub.read_marker(again.hub.find_user("alice"), "#ROOM")) == "2026-01-02T03:04:05.000Z"
    finally:
        await again.stop()


@pytest_twisted.ensureDeferred
async def test_an_accounts_markers_are_read_at_login_without_autojoin(tmp_path):
    """Read back at login itself, not only before the rooms are joined again: with
    ``[irc] autojoin`` off, a marker set before a restart was not there (review finding)."""
    config = Config().with_overrides(limits={"flood_exempt": LOOPBACK}, websocket={"ping_interval": 0},
                                     irc={"autojoin": False})
    server = await HubServer.stored(tmp_path, config)
    await server.accounts.create_account("alice", "correct-horse")
    try:
        alice = await irc_user(server, "alice", CAPS, password="correct-horse")
        alice.send("MARKREAD bob timestamp=2026-01-02T03:04:06.000Z")
        await alice.expect_re(r" MARKREAD bob timestamp=2026-01-02T03:04:06.000Z$")
        user = server.hub.find_user("alice")
        alice.send("QUIT :bye")
        await alice.closed
        # stored, so no longer held in memory once its user left and its write is done (it
        # was held for good, for every account that ever logged in)
        await until(lambda: server.hub.read_marker(user, "bob") is None)
    finally:
        await server.stop()
    again = await HubServer.stored(tmp_path, config)
    try:
        alice = await irc_user(again, "alice", CAPS, password="correct-horse")
        alice.send("MARKREAD bob")
        await alice.expect_re(r" MARKREAD bob timestamp=2026-01-02T03:04:06.000Z$")
    finally:
        await again.stop()


def test_a_marker_waits_for_a_store_that_does_not_answer_two_seconds_at_most():
    """The login's read of the stored markers holds a MARKREAD (and a connection's later
    lines) only so long: a store that does not answer must not freeze the session."""
    from twisted.internet import defer, task

    from chathub.hub.readmarkers import LOAD_WAIT, ReadMarkers
    from chathub.hub.users import User
    from tests.support import Recorder

    class SilentStore:
        def __init__(self) -> None:
            self.reads: list[defer.Deferred] = []

        def read_markers(self, account):
            self.reads.append(defer.Deferred())
            return self.reads[-1]

    clock, store = task.Clock(), SilentStore()
    markers = ReadMarkers(10, store, timer=clock)
    user = User(Recorder(None), account="alice")
    markers.load(user)
    waited = markers.loaded(user)
    clock.advance(LOAD_WAIT - 0.1)
    assert not waited.called
    clock.advance(0.1)
    assert waited.called  # answered from memory
    store.reads[0].callback({"#room": 5.0})  # the read ends later: taken in, nobody told twice
    assert markers.get(user, "#ROOM") == 5.0 and not clock.getDelayedCalls()


def test_a_marker_another_node_moved_is_kept_while_the_accounts_markers_are_being_read():
    """A ``marker`` from another node was dropped when this node was still reading the
    account's stored markers (a login here at that moment): the store might not have it
    yet, so the session kept the older one."""
    from types import SimpleNamespace

    from twisted.internet.defer import Deferred

    from chathub.hub.readmarkers import ReadMarkers

    class SlowStore:
        def __init__(self) -> None:
            self.reads: list = []

        def read_markers(self, account: str):
            read: Deferred = Deferred()
            self.reads.append(read)
            return read

    store = SlowStore()
    markers = ReadMarkers(10, store)  # type: ignore[arg-type]
    ann = SimpleNamespace(account="Ann", session="s1")
    markers.load(ann)  # type: ignore[arg-type]
    assert markers.learned("ann", "#x", 5.0)
    store.reads[0].callback({"#x": 3.0, "#y": 4.0})
    assert markers.get(ann, "#x") == 5.0 and markers.get(ann, "#y") == 4.0  # type: ignore[arg-type]
    assert not markers.learned("ann", "#x", 4.5)  # never back
    assert not markers.learned("bob", "#x", 1.0)  # no session of bob here: nothing kept
