"""Room names claimed across a cluster (``chathub.hub.roomclaims``): two hubs, each with its
cluster relay, on one PostgreSQL database, whose backplanes share one table of claims (as
Redis's would be) and whose doorbell the test can hold back (a ``Gate``).

Without the claim, two nodes whose users join a new name before either hears of the
other's room both make it: both users are operators, each node starts a new incarnation
of the name's history (the later one hiding the other's JOIN) and the room's order at its
own first number. The same with real nodes, Redis and IRC clients is in
tests/test_cluster_races.py."""
from __future__ import annotations

from dataclasses import replace
from typing import Optional

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import fail, succeed

from chathub.config import Config
from chathub.config.cluster import ClusterConfig
from chathub.events import Kind
from chathub.hub import errors
from chathub.hub.roomclaims import ROOM_CLAIM
from chathub.interfaces import BackplaneUnavailable
from tests.store_fixtures import *  # noqa: F401,F403 (fixtures)
from tests.support import until
from tests.test_cluster_admission import Gate, cluster_node
from tests.test_cluster_relay import on_postgres
from tests.test_remote_directory import LinkedBackplane

#: seconds a join waits for a room claimed elsewhere before taking the claim over
WAIT = 0.3


class ClaimingBackplane(LinkedBackplane):
    """A ``LinkedBackplane`` whose room claims go to one table shared by every node (the
    Redis script's rules: a holder other than the claimant and the one it replaces
    refuses); ``down`` makes every claim fail as without Redis."""

    def __init__(self, node_id: str, claims: dict[str, str]) -> None:
        super().__init__(node_id)
        self.claims = claims
        self.down = False

    def claim_room(self, folded: str, token: str, replacing: Optional[str] = None):
        if self.down:
            return fail(BackplaneUnavailable("not connected to Redis"))
        holder = self.claims.get(folded)
        if holder is not None and holder not in (token, replacing):
            return succeed(holder)
        self.claims[folded] = token
        return succeed(None)

    def release_room(self, folded: str, token: str):
        if self.claims.get(folded) == token:
            del self.claims[folded]
        return succeed(None)


@pytest_twisted.async_yield_fixture
async def nodes(store_factory):
    """Nodes a and b sharing one table of claims; a's messages reach b through a gate."""
    claims: dict[str, str] = {}
    pa, pb = ClaimingBackplane("a", claims), ClaimingBackplane("b", claims)
    gate = Gate(pb)
    pa.link(gate)
    pb.link(pa)
    config = Config(cluster=ClusterConfig(room_claim_wait=WAIT))
    a, relay_a = await cluster_node(store_factory, pa, config)
    b, relay_b = await cluster_node(store_factory, pb, config)
    yield a, b, gate, claims
    relay_a.stop()
    relay_b.stop()


async def made_on_a(a, b, room: str):
    """alice (on a) makes ``room``, which b then holds; returns alice and bob (on b)."""
    alice, bob = a.connect("alice"), b.connect("bob")
    await a.hub.claim_and_join(alice, room)
    await until(lambda: room in b.hub.rooms)
    return alice, bob


def members(world, room: str) -> dict[str, str]:
    return {folded: m.privileges for folded, m in world.hub.rooms[room].members.items()}


def joins_seen(user) -> list[str]:
    return [e.source.nick for e in user.participant.events if e.kind == Kind.JOIN]


@on_postgres
@pytest_twisted.ensureDeferred
async def test_two_nodes_joining_a_new_name_at_once_make_one_room(nodes):
    """bob (on b) joins #new while alice's JOIN, which made it on a, is still on its way to b:
    b's claim is refused, so bob's join waits for the room and joins it as a member."""
    a, b, gate, claims = nodes
    alice, bob = a.connect("alice"), b.connect("bob")
    gate.closed = True
    made = a.hub.claim_and_join(alice, "#New")
    waiting = b.hub.claim_and_join(bob, "#new")
    assert made.called and not waiting.called  # b has no room yet: it waits for a's
    room = await made
    assert room is a.hub.rooms["#new"] and room.claim == claims["#new"]
    assert "#new" not in b.hub.rooms and bob.rooms == {}
    await until(lambda: a.hub.outbox.pending == 0)
    gate.open()
    assert await waiting is b.hub.rooms["#new"]
    await until(lambda: "bob" in a.hub.rooms["#new"].members)
    # one operator, the maker; the same room on both nodes, which both know the claim of
    assert members(a, "#new") == members(b, "#new") == {"alice": "o", "bob": ""}
    assert b.hub.rooms["#new"].claim == claims["#new"] == room.claim
    assert b.hub.room_claims.refused == 1 and b.hub.room_claims.granted == 0
    # every JOIN in one incarnation of the history, in the order both nodes showed
    await until(lambda: b.hub.outbox.pending == 0 and joins_seen(alice) == ["bob"])
    assert joins_seen(bob) == []  # bob joined after alice's JOIN was shown on b
    for world, user in ((a, alice), (b, bob)):
        events = await world.hub.history(user, "latest", "#new", None, limit=10)
        assert [(e.kind, e.source.nick) for e in events if e.kind == Kind.JOIN] == [
            (Kind.JOIN, "alice"), (Kind.JOIN, "bob")
        ]
        made_with = [e.data.get(ROOM_CLAIM) for e in events if e.kind == Kind.JOIN]
        assert made_with == [room.claim, None]  # only the making JOIN carries it


@on_postgres
@pytest_twisted.ensureDeferred
async def test_a_room_that_ends_frees_its_name_on_every_node(nodes):
    a, b, gate, claims = nodes
    alice, bob = await made_on_a(a, b, "#gone")
    token = claims["#gone"]
    await b.hub.claim_and_join(bob, "#gone")  # here: a plain join, no claim
    assert claims == {"#gone": token}
    await until(lambda: "bob" in a.hub.rooms["#gone"].members)
    a.hub.part(alice, "#gone")
    b.hub.part(bob, "#gone")
    await until(lambda: "#gone" not in a.hub.rooms and "#gone" not in b.hub.rooms)
    assert claims == {}
    # made again, on the other node: a new claim, and bob its operator
    again = await b.hub.claim_and_join(bob, "#gone")
    assert claims["#gone"] == again.claim != token and members(b, "#gone") == {"bob": "o"}


@on_postgres
@pytest_twisted.ensureDeferred
async def test_a_claim_whose_room_never_came_is_taken_over_after_the_wait(nodes):
    """A node died between claiming #lost and storing its JOIN: the claim stays in Redis.
    A join elsewhere waits ``room_claim_wait`` for the room, then takes the claim over."""
    a, b, gate, claims = nodes
    claims["#lost"] = "c/dead/1"
    bob = b.connect("bob")
    started = reactor.seconds()
    room = await b.hub.claim_and_join(bob, "#lost")
    assert reactor.seconds() - started >= WAIT * 0.9
    assert claims["#lost"] == room.claim and room.claim.startswith("b/")
    assert members(b, "#lost") == {"bob": "o"} and b.hub.room_claims.taken_over == 1
    await until(lambda: "#lost" in a.hub.rooms and a.hub.rooms["#lost"].claim == room.claim)


@on_postgres
@pytest_twisted.ensureDeferred
async def test_without_redis_no_room_is_made_and_rooms_that_exist_go_on(nodes):
    a, b, gate, claims = nodes
    alice, bob = await made_on_a(a, b, "#old")
    b.hub.cluster.down = True
    with pytest.raises(errors.RoomUnavailable) as refused:
        await b.hub.claim_and_join(bob, "#Fresh")
    assert refused.value.target == "#Fresh" and "#fresh" not in b.hub.rooms and bob.rooms == {}
    assert await b.hub.claim_and_join(bob, "#old") is b.hub.rooms["#old"]  # exists: no claim


@on_postgres
@pytest_twisted.ensureDeferred
async def test_a_join_refused_after_its_claim_gives_the_claim_back(nodes):
    """The server holds its most rooms ([limits] max_rooms): the claim was granted, the
    room is refused, and the name is free again."""
    a, b, gate, claims = nodes
    alice = a.connect("alice")
    a.hub.reconfigure(replace(a.hub.config, limits=replace(a.hub.config.limits, max_rooms=1)))
    await a.hub.claim_and_join(alice, "#one")
    with pytest.raises(errors.RoomLimitReached):
        await a.hub.claim_and_join(alice, "#two")
    assert list(claims) == ["#one"] and "#two" not in a.hub.rooms
