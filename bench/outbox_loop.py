#!/usr/bin/env python3
"""The outbox's own cost a room message, alone in one process: ``Outbox.hold`` (as the hub
holds each chat message for its commit: one of 100 rooms, sent by one of its members), the
commit of a group of 5,000, and their delivery in one drain (``Outbox.settling``); the best
of ``--rounds``.

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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--group", type=int, default=5000, help="messages a commit")
    args = p.parse_args()
    rooms = [f"#bench{i}" for i in range(100)]
    # each message's room, made before the clock starts (its sender a member: counted
    # under the room, ``Outbox.hold``)
    keys = [rooms[i % 100] for i in range(args.group)]
    box = Outbox()
    # a lone node's outbox before replies went ahead (298ed0f) took neither the room nor the sender
    counted = "by" in inspect.signature(Outbox.hold).parameters
    hold = box.hold

    def deliver() -> None:
        pass

    best = float("inf")
    for _ in range(args.rounds):
        start = time.perf_counter()
        if counted:
            settles = [hold(deliver, None, key) for key in keys]
        else:
            settles = [hold(deliver, None) for key in keys]
        with box.settling():
            for settle in settles:
                settle(None)
        best = min(best, time.perf_counter() - start)
    print(f"{best / args.group * 1e6:.3f} us a room message (hold, commit, delivery), best of {args.rounds}")


if __name__ == "__main__":
    main()
