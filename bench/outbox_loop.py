#!/usr/bin/env python3
"""The outbox's own cost a room message, alone in one process: ``Outbox.hold`` (as the hub
holds each chat message for its commit, sent by one of 1,000 users), the commit of a group of
5,000, and their delivery in one drain (``Outbox.settling``); the best of ``--rounds``.

    python bench/outbox_loop.py                  # this checkout
    PYTHONPATH=/path/to/other/checkout python bench/outbox_loop.py   # another one's, to compare

What it leaves out (the event, the store, the fan-out) is the same on both sides of a
comparison; run each side more than once, alternating: this VM's spread is a tenth.
"""
from __future__ import annotations

import argparse
import inspect
import time

from chathub.hub.outbox import Outbox


class _User:
    """What the outbox reads of a user: its rooms."""

    __slots__ = ("rooms",)

    def __init__(self) -> None:
        self.rooms = {"#bench0": None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--group", type=int, default=5000, help="messages a commit")
    args = p.parse_args()
    users = [_User() for _ in range(1000)]
    box = Outbox()
    # an outbox before senders were counted takes no ``by`` and ``chat``
    sender = "chat" in inspect.signature(Outbox.hold).parameters
    hold = box.hold

    def deliver() -> None:
        pass

    best = float("inf")
    for _ in range(args.rounds):
        start = time.perf_counter()
        if sender:
            settles = [hold(deliver, None, None, None, None, users[i % 1000], True) for i in range(args.group)]
        else:
            settles = [hold(deliver, None, None, None, None) for _ in range(args.group)]
        with box.settling():
            for settle in settles:
                settle(None)
        best = min(best, time.perf_counter() - start)
    print(f"{best / args.group * 1e6:.3f} us a room message (hold, commit, delivery), best of {args.rounds}")


if __name__ == "__main__":
    main()
