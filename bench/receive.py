#!/usr/bin/env python3
"""The receiving side of a cluster node, in one process and without sockets: another node's
committed groups of room messages, as the backplane carries them (MessagePack), read,
ordered by the relay, checked at their number and delivered to this node's members, against
the same events delivered to the same members directly (what a lone node does once its
commit is done). The difference is what receiving costs a node beyond the delivery itself.

    python bench/receive.py                    # 100 rooms of 5 members here, 100,000 events
    python bench/receive.py --rounds 5         # best of 5 (the machine is shared)
    python bench/receive.py --profile          # and cProfile's busiest functions of the receiving

Members are recording participants (an encode is a small bytes object): the figures leave
out the IRC rendering and the socket writes, which both ways pay alike. The collector is set
as in a running server (``GC_THRESHOLDS``). CPU time of this process (``time.process_time``).
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from typing import Any, Optional

from zope.interface import implementer

from twisted.internet import task
from twisted.internet.defer import succeed

from chathub.backplane import LocalBackplane
from chathub.cluster.redis import decode_message, encode_message
from chathub.cluster.relay import ClusterRelay, GroupForm
from chathub.config import Config
from chathub.events import Event, EventIds, Kind, Source
from chathub.hub.service import ChatHub, _prepare_collector
from chathub.hub.users import User
from chathub.interfaces import IParticipant


@implementer(IParticipant)
class Member:
    """A member that keeps what it was sent, until ``clear``."""

    protocol = "bench"
    address = "192.0.2.1"
    format_key = "bench"
    echo_own = False

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def encode(self, event: Event) -> Optional[bytes]:
        return event.id.encode()

    def send(self, data: bytes) -> None:
        self.sent.append(data)

    def deliver(self, event: Event) -> None:
        self.sent.append(event.id.encode())

    def close(self, reason: str) -> None:
        """Nothing to close."""


class NoStore:
    """The relay's store: nothing is committed here, and no gap is read (there is none)."""

    def when_committed(self, listener: Any) -> None:
        """This node sends nothing."""


class Peers(LocalBackplane):
    """The other node is there (its lease), and says nothing but the groups fed in."""

    def peers(self):
        return succeed(["a"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rooms", type=int, default=100)
    parser.add_argument("--members", type=int, default=5, help="members of each room on this node")
    parser.add_argument("--group", type=int, default=500, help="events a committed group holds")
    parser.add_argument("--groups", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each way; the best is shown")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    _prepare_collector()
    hub = ChatHub(Config().with_overrides(metrics={"enabled": False}))
    backplane = Peers("b")
    hub.join_cluster(backplane)
    relay = ClusterRelay(NoStore(), backplane, hub.deliver_remote, task.Clock(), outbox=hub.outbox,
                         made_here=hub.ids.made_here, held_alone=hub.held_alone, admit=hub.admit,
                         batching=hub.batching, live=hub.room_is_live)
    hub._positions = relay
    relay.start()
    members: list[Member] = []
    for r in range(args.rooms):
        for m in range(args.members):
            participant = Member()
            user = User(participant, user="u", host="bench.example")
            hub.sign_on(user, f"u{r}x{m}")
            hub.join(user, f"#r{r}")
            members.append(participant)
    senders = [Source(f"s{r}", "~s", "s.cloak", None, "s", "irc", f"session{r}") for r in range(args.rooms)]
    ids, form = EventIds(), GroupForm()
    numbers = {f"#r{r}": relay.position(f"#r{r}") or 0 for r in range(args.rooms)}

    def groups(numbers: dict[str, int]) -> list[bytes]:
        """The next ``--groups`` groups, each event at the next number of its room in ``numbers``."""
        bodies = []
        for _ in range(args.groups):
            items = []
            for i in range(args.group):
                conv = f"#r{i % args.rooms}"
                numbers[conv] += 1
                eid, now = ids.next()
                event = Event(eid, now, Kind.MESSAGE, senders[i % args.rooms], conv, f"hello {i}", None, None)
                items.append((event, ((conv, numbers[conv]),)))
            bodies.append(encode_message(form.message("a", items)))
        return bodies

    def clear() -> None:
        for member in members:
            member.sent.clear()

    def received(bodies: list[bytes]) -> None:
        for body in bodies:
            relay._received(decode_message(body))
            hub.fanout.flush()
            clear()

    def direct(decoded: list[list[Any]]) -> None:
        for items in decoded:
            with hub.batching():
                for positions, event in items:
                    hub._deliver_now(event, hub.rooms[positions[0][0]].recipients())
            hub.fanout.flush()
            clear()

    events = args.group * args.groups
    best_received = best_direct = float("inf")
    for _ in range(args.rounds):
        bodies = groups(numbers)  # the relay's next numbers: each delivered at once, in order
        start = time.process_time()
        received(bodies)
        best_received = min(best_received, (time.process_time() - start) / events)
        decoded = [GroupForm().decode(decode_message(body)["group"]) for body in groups(dict(numbers))]
        start = time.process_time()
        direct(decoded)
        best_direct = min(best_direct, (time.process_time() - start) / events)
    held = sum(len(state.ahead) for state in relay.conversations.values())
    assert held == 0 and relay.duplicates == 0, f"{held} events held for a gap, {relay.duplicates} duplicates"
    print(f"{args.rooms} rooms, {args.members} members each here, groups of {args.group}: "
          f"received {best_received * 1e6:.2f} us an event, delivered directly {best_direct * 1e6:.2f} us, "
          f"receiving {(best_received - best_direct) * 1e6:.2f} us more (best of {args.rounds})")
    if args.profile:
        bodies = groups(numbers)
        profiler = cProfile.Profile()
        profiler.runcall(received, bodies)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)


if __name__ == "__main__":
    main()
