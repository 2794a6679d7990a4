"""What protocols get from storage through the hub: history and account registration, whose
failures arrive as ``HubError`` codes (``account_exists``, ``no_such_message``,
``storage_failed``), never as the store's exceptions. Real stores of both backends and the
real account_creator (``StoreAccountChecker``)."""
from __future__ import annotations

import pytest
import pytest_twisted

from chathub.auth.accounts import StoreAccountChecker
from chathub.config import Config
from chathub.hub import errors
from chathub.hub.service import ChatHub
from chathub.hub.users import User
from chathub.records import CHAT_KINDS
from chathub.store.interfaces import StorageError
from tests.store_fixtures import *  # noqa: F401,F403 (fixtures)
from tests.support import CHEAP_HASHER, Recorder


def _hub(store) -> ChatHub:
    accounts = StoreAccountChecker(store, CHEAP_HASHER)
    return ChatHub(Config(), store=store, accounts=accounts, account_creator=accounts)


def _user(hub: ChatHub, nick: str) -> User:
    user = User(Recorder({}))
    hub.sign_on(user, nick)
    return user


async def _refused(d) -> errors.HubError:
    with pytest.raises(errors.HubError) as refused:
        await d
    assert not isinstance(refused.value, StorageError)
    return refused.value


@pytest_twisted.ensureDeferred
async def test_history_pages_and_an_unknown_message(store):
    hub = _hub(store)
    alice, bob = _user(hub, "alice"), _user(hub, "bob")
    hub.join(alice, "#room")
    hub.join(bob, "#room")
    sent = [hub.send(alice, "#room", f"m{i}") for i in range(4)]
    await store.append(hub.ids.make("message", alice.source, "#elsewhere", "marker"))  # commits the rest
    page = await hub.history(bob, "before", "#room", ("msgid", sent[3].id), limit=2, kinds=CHAT_KINDS)
    assert [e.text for e in page] == ["m1", "m2"]
    page = await hub.history(bob, "between", "#room", ("msgid", sent[0].id), ("msgid", sent[3].id), limit=10)
    assert [e.text for e in page] == ["m1", "m2"]
    assert [e.text for e in await hub.recent_history(bob, "#room", 2)] == ["m2", "m3"]
    targets = await hub.history_targets(bob, 0, 2e9, 10)
    assert [name for name, _ in targets] == ["#room"]
    refused = await _refused(hub.history(bob, "around", "#room", ("msgid", "no-such-id"), limit=3))
    assert refused.code == "no_such_message" and refused.target == "no-such-id"


@pytest_twisted.ensureDeferred
async def test_registering_a_name_taken_elsewhere_is_account_exists(store):
    hub = _hub(store)
    await store.create_account("erin", "a hash from another server")  # not in the hub's set
    erin = _user(hub, "Erin")
    refused = await _refused(hub.create_account(erin, "password"))
    assert refused.code == "account_exists" and erin.account is None
    refused = await _refused(hub.create_nick_account("ERIN", "password"))
    assert refused.code == "account_exists"
    account = await hub.create_nick_account("frank", "password")
    assert account.name == "frank" and hub.accounts.is_account("FRANK")


@pytest_twisted.ensureDeferred
async def test_a_store_that_cannot_answer_is_storage_failed(store_factory):
    hub = _hub(await store_factory(open=False))  # never opened: every call fails with StorageError
    alice = _user(hub, "alice")
    hub.join(alice, "#room")
    for d in (
        hub.history(alice, "latest", "#room", None, limit=10),
        hub.recent_history(alice, "#room", 10),
        hub.history_targets(alice, 0, 2e9, 10),
        hub.create_account(alice, "password"),
    ):
        refused = await _refused(d)
        assert refused.code == "storage_failed" and "storage is not open" in refused.message


@pytest_twisted.ensureDeferred
async def test_a_hub_without_history_says_so(store):
    hub = ChatHub(Config().with_overrides(history={"enabled": False}), store=store)
    alice = _user(hub, "alice")
    assert (await _refused(hub.history(alice, "latest", "#room", None, limit=10))).code == "history_unavailable"
    assert (await _refused(hub.history_targets(alice, 0, 2e9, 10))).code == "history_unavailable"
    assert await hub.recent_history(alice, "#room", 10) == []
    assert (await _refused(hub.create_nick_account("bob", "password"))).code == "registration_unavailable"
