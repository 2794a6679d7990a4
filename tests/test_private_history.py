"""Private history belongs to its parties: a guest's talk stays with that guest's connection."""
from __future__ import annotations

from functools import partial

import pytest_twisted

from chathub.config import Config
from chathub.hub.service import ChatHub
from chathub.hub.users import User
from chathub.records import CHAT_KINDS
from chathub.store import open_store
from tests.support import Recorder


def _user(hub: ChatHub, nick: str, account=None) -> User:
    user = User(Recorder({}), account=account)
    hub.sign_on(user, nick)
    return user


def _texts(events) -> list[str]:
    return [e.text for e in events]


def _latest(hub: ChatHub, store, user: User, target: str):
    """The last 10 chat events of ``target`` as ``user`` reads them."""
    return store.latest(hub.history_viewer(user), hub.history_target(user, target), None, 10, CHAT_KINDS)


@pytest_twisted.async_yield_fixture
async def hub_and_store(tmp_path):
    """A hub on a SQLite store in ``tmp_path``, the store closed after the test."""
    config = Config().with_overrides(server={"data_dir": str(tmp_path)})
    store = open_store(config)
    await store.open()
    yield ChatHub(config, store=store), store
    await store.close()


@pytest_twisted.inlineCallbacks
def test_a_new_guest_with_an_old_nick_cannot_read_its_private_history(hub_and_store):
    hub, store = hub_and_store
    alice, bob = _user(hub, "alice"), _user(hub, "bob")
    hub.send(alice, "bob", "for bob only")
    hub.send(bob, "alice", "for alice only")
    # both messages are committed once a later append is (appends commit in order)
    yield store.append(hub.ids.make("message", alice.source, "#elsewhere", "marker"))
    latest = partial(_latest, hub, store)

    assert _texts((yield latest(alice, "bob"))) == ["for bob only", "for alice only"]
    assert _texts((yield latest(bob, "alice"))) == ["for bob only", "for alice only"]
    hub.quit(bob, "bye")
    # the conversation outlives bob's connection for alice ...
    assert _texts((yield latest(alice, "bob"))) == ["for bob only", "for alice only"]
    # ... but whoever takes the nick next is another party and reads nothing
    impostor = _user(hub, "bob")
    assert (yield latest(impostor, "alice")) == []
    assert (yield store.targets(hub.history_viewer(impostor), 0, 2e9, 10)) == []
    # an account holder's private history follows the account, not the connection
    carol = _user(hub, "carol", account="carol")
    hub.send(alice, "carol", "to carol")
    yield store.append(hub.ids.make("message", alice.source, "#elsewhere", "marker"))
    hub.quit(carol, "bye")
    carol_again = _user(hub, "carol", account="carol")
    assert _texts((yield latest(carol_again, "alice"))) == ["to carol"]


@pytest_twisted.inlineCallbacks
def test_a_guests_private_history_follows_its_connection_across_a_nick_change(hub_and_store):
    """A guest's private conversation was named by its nick and connection: after a nick
    change its earlier talk was in another conversation, and neither party read it any more
    (CHATHISTORY with the other party showed only what came after the change, TARGETS two
    conversations). It is the connection's: one conversation, before and after."""
    hub, store = hub_and_store
    alice, bob = _user(hub, "alice"), _user(hub, "bob")
    hub.send(alice, "bob", "before")
    hub.send(bob, "alice", "answer before")
    hub.change_nick(alice, "alice2")
    hub.send(alice, "bob", "after")
    hub.send(bob, "alice2", "answer after")
    yield store.append(hub.ids.make("message", alice.source, "#elsewhere", "marker"))
    latest = partial(_latest, hub, store)

    whole = ["before", "answer before", "after", "answer after"]
    assert _texts((yield latest(alice, "bob"))) == whole
    assert _texts((yield latest(bob, "alice2"))) == whole
    assert _texts((yield latest(bob, "alice"))) == whole  # the nick it had (WHOWAS)
    assert (yield store.targets(hub.history_viewer(bob), 0, 2e9, 10))[0][0] == "alice2"
    assert [name for name, _ in (yield store.targets(hub.history_viewer(alice), 0, 2e9, 10))] == ["bob"]
    # still the connection's: whoever takes either nick next reads none of it
    hub.quit(alice, "bye")
    for nick in ("alice", "alice2"):
        assert (yield latest(_user(hub, nick), "bob")) == []
