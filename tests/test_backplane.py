"""IBackplane and its single-node implementation, tested against the interface."""
from __future__ import annotations

import pytest
from zope.interface.verify import verifyClass, verifyObject

from chathub.backplane import LocalBackplane
from chathub.events import EventIds, Kind, Source
from chathub.interfaces import IBackplane


@pytest.fixture
def event():
    return EventIds().make(Kind.MESSAGE, Source(nick="alice", protocol="irc"), "#chat", "hello")


def test_local_backplane_provides_the_interface():
    verifyClass(IBackplane, LocalBackplane)
    verifyObject(IBackplane, LocalBackplane())


def test_publishing_on_a_lone_node_reaches_no_subscriber(event):
    backplane = LocalBackplane()
    heard = []
    backplane.subscribe(heard.append)
    backplane.publish(event)
    assert heard == []  # the node's own events reach its users through the hub


def test_events_from_other_nodes_reach_every_subscriber_once_in_order(event):
    backplane = LocalBackplane()
    first, second = [], []
    backplane.subscribe(first.append)
    backplane.subscribe(second.append)
    backplane.subscribe(first.append)  # subscribing twice does not deliver twice
    backplane.receive(event)
    assert first == [event] and second == [event]
    backplane.unsubscribe(first.append)
    backplane.receive(event)
    assert first == [event] and second == [event, event]
