#!/usr/bin/env python3
"""The cost of one message by stage, from py-spy's raw (collapsed) stacks of chathub.

    py-spy record --pid PID --rate 250 --nonblocking --format raw --output rooms.txt --duration 8
    python bench/stages.py rooms.txt --us-per-message 61.5

Each sample is put in the first stage (in the order below) that one of its frames belongs
to, so a socket write made while the fan-out runs counts as a write, and the fan-out's own
work as the fan-out: the stages add up to 100%. A sample in the TCP transport's ``doRead``
itself is the socket's receive. The writer thread's samples (SQLite, its
thread pool) are the store's, and so are the reactor thread's samples in ``_publish`` itself
(waiting for the GIL while the writer thread, just woken, runs). ``--us-per-message`` (the
server's CPU time per message: server CPU / (deliveries per second / (members - 1)))
turns shares into microseconds.
"""
from __future__ import annotations

import argparse
import re
from collections import Counter
from typing import Iterator

#: (stage, what one of its frames looks like), the first match wins
STAGES = [
    # any frame of the send queue: ``write``, and ``_send`` when a batch is flushed (``send_held``)
    ("writes (socket send)", r"\(chathub/protocols/sendqueue\.py"),
    ("fan-out encode", r"^(_encode \(chathub/hub/fanout\.py|encode \(chathub/protocols/|render_lines )"),
    ("fan-out (recipients, batching)", r"\(chathub/hub/fanout\.py"),
    ("store (append, writer thread, commit)", r"\(chathub/store/|adbapi\.py|twisted/_threads/|threadpool\.py"),
    ("outbox (hub order, release)", r"\(chathub/hub/outbox\.py"),
    ("hub checks + event", r"\(chathub/hub/|\(chathub/events\.py"),
    ("cluster (relay, Redis, MessagePack)", r"\(chathub/cluster/|txredisapi|msgpack|hiredis"),
    ("parse + dispatch", r"\(chathub/protocols/|irctokens/"),
]
OTHER = "other (reactor loop, timers, logs)"
#: samples whose innermost frame is this belong to the store: the hub's ``_publish`` hands
#: the event to the writer thread, and the samples on its own lines (a few assignments) are
#: the reactor thread waiting there for the GIL while that thread runs
HANDOFF = re.compile(r"^_publish \(chathub/hub/service\.py")
STORE = STAGES[3][0]
#: samples whose innermost frame is the TCP transport's ``doRead`` are the socket's receive
#: (the system call and its buffer), before any of chathub's code sees the bytes
RECEIVE = re.compile(r"^doRead \(twisted/internet/tcp\.py")
READS = "reads (socket receive)"


def read_stacks(path: str) -> Iterator[tuple[list[str], int]]:
    """(frames, outermost first, samples) of each line of py-spy's raw output."""
    with open(path, errors="replace") as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if stack and count.isdigit():
                yield stack.split(";"), int(count)


def stage_counts(path: str) -> tuple[Counter, int]:
    """Samples per stage, and all samples, of a py-spy raw file."""
    rules = [(name, re.compile(pattern)) for name, pattern in STAGES]
    counts: Counter = Counter()
    total = 0
    for frames, n in read_stacks(path):
        total += n
        if HANDOFF.search(frames[-1]):
            counts[STORE] += n
            continue
        if RECEIVE.search(frames[-1]):
            counts[READS] += n
            continue
        counts[next((name for name, rule in rules if any(rule.search(fr) for fr in frames)), OTHER)] += n
    return counts, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stacks", help="py-spy --format raw output")
    parser.add_argument("--us-per-message", type=float, help="server CPU microseconds per message of that run")
    args = parser.parse_args()
    counts, total = stage_counts(args.stacks)
    print(f"{total} samples")
    print("| stage | share | us per message |")
    print("|---|---|---|")
    for name in [READS] + [s for s, _ in STAGES][::-1] + [OTHER]:
        share = counts[name] / total if total else 0.0
        us = f"{share * args.us_per_message:.1f}" if args.us_per_message else ""
        print(f"| {name} | {100 * share:.1f}% | {us} |")


if __name__ == "__main__":
    main()
