"""``ChatHub.history_available``: the one answer to "does this server keep history"."""
from __future__ import annotations

import pytest

from chathub.config import Config
from chathub.hub.service import ChatHub
from chathub.protocols.web.history import HistoryUnavailable, fetch_history
from tests.support import RecorderWorld, irc_world


class UnreadableStore:
    """A store no history query may reach: availability must be decided before asking it."""

    def wrap_releases(self, around):
        """Nothing is ever written here, so nothing is released."""

    def latest(self, *args):
        raise AssertionError("history read while unavailable")

    before = after = latest


def test_history_needs_a_store_and_the_setting():
    assert not ChatHub(Config()).history_available
    hub = ChatHub(Config(), store=UnreadableStore())
    assert hub.history_available
    hub.history_enabled = False
    assert not hub.history_available
    disabled = Config().with_overrides(history={"enabled": False})
    assert not ChatHub(disabled, store=UnreadableStore()).history_available


def test_recent_history_and_web_pages_follow_it():
    world = RecorderWorld(store=UnreadableStore())
    alice = world.connect("alice")
    world.hub.history_enabled = False
    results = []
    world.hub.recent_history(alice, "#chat", 10).addCallback(results.append)
    assert results == [[]]
    with pytest.raises(HistoryUnavailable):
        fetch_history(world.hub, alice, "#chat", 10)


def test_irc_chathistory_follows_it():
    world = irc_world()
    dana = world.irc_conn("dana")
    dana.send("CHATHISTORY LATEST #chat * 10")
    fail = [m for m in dana.lines() if m.command == "FAIL"]
    assert [m.params[:3] for m in fail] == [["CHATHISTORY", "MESSAGE_ERROR", "LATEST"]]
