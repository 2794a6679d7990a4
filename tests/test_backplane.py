"""IBackplane and its single-node implementation, tested against the interface."""
from __future__ import annotations

from zope.interface.verify import verifyClass, verifyObject

from chathub.backplane import LocalBackplane
from chathub.interfaces import IBackplane

MESSAGE = {"node": "other", "events": [{"kind": "message", "text": "hello"}]}


def _result(d):
    results = []
    d.addBoth(results.append)
    assert len(results) == 1, "a lone node answers at once"
    return results[0]


def test_local_backplane_provides_the_interface():
    verifyClass(IBackplane, LocalBackplane)
    verifyObject(IBackplane, LocalBackplane())


def test_publishing_on_a_lone_node_reaches_no_subscriber():
    backplane = LocalBackplane()
    heard = []
    backplane.subscribe(heard.append)
    backplane.publish(MESSAGE)
    assert heard == []  # the node's own events reach its users through the hub


def test_messages_from_other_nodes_reach_every_subscriber_once_in_order():
    backplane = LocalBackplane()
    first, second = [], []
    backplane.subscribe(first.append)
    backplane.subscribe(second.append)
    backplane.subscribe(first.append)  # subscribing twice does not deliver twice
    backplane.receive(MESSAGE)
    assert first == [MESSAGE] and second == [MESSAGE]
    backplane.unsubscribe(first.append)
    backplane.receive(MESSAGE)
    assert first == [MESSAGE] and second == [MESSAGE, MESSAGE]


def test_a_lone_node_grants_every_claim_and_has_no_one_to_reap():
    """The hub's own user table is a lone node's nick namespace: the backplane adds nothing."""
    backplane = LocalBackplane()
    assert backplane.connected and backplane.node_id == "local"
    assert _result(backplane.start()) is None
    assert _result(backplane.claim_nick("alice", "local/1")) is True
    assert _result(backplane.rename_nick("alice", "bob", "local/1")) is True
    assert _result(backplane.release_nick("bob", "local/1")) is None
    assert _result(backplane.nick_owner("bob")) is None
    assert _result(backplane.reap("other")) is False
    assert _result(backplane.stop()) is None
