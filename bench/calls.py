#!/usr/bin/env python3
"""Function calls per message of two servers, from the cProfile statistics of a
``bench/run.py --cprofile`` run (one file per server, or per node of a cluster).

    python bench/run.py --nodes 2 --scenarios rooms --runs 1 --cprofile
    python bench/calls.py 'bench/results/STAMP-rooms-chathub-x2-nodes-run1-node*.cprofile' \\
        bench/results/STAMP-rooms-chathub-run1.cprofile
    python bench/calls.py A B --callers "is_room_name"     # who calls it, and how often

cProfile slows the server several times over and its times are wall-clock (a node sharing a
core with another is charged for the other's turns), but its call counts are exact: the
Python calls (and calls of built-ins) a server makes per message tell two servers, or two
versions of one, apart where sampling cannot. A message is one call of ``--per`` (default
``plain_privmsg_line``, the IRC fast path every benchmark message takes), summed over the
files of a side; the counts cover the whole run (registration and joins too, a call or two
a message at the benchmark's sizes).
"""
from __future__ import annotations

import argparse
import glob
import pstats
from collections import Counter
from dataclasses import dataclass


@dataclass
class Side:
    """The summed statistics of one server (every node's file)."""

    calls: Counter
    callers: dict[str, Counter]
    messages: int

    @classmethod
    def load(cls, pattern: str, per: str) -> "Side":
        calls: Counter = Counter()
        callers: dict[str, Counter] = {}
        paths = sorted(glob.glob(pattern))
        if not paths:
            raise SystemExit(f"no statistics match {pattern!r}")
        for path in paths:
            stats = pstats.Stats(path).stats  # type: ignore[attr-defined]
            for (file, line, name), (_, ncalls, _, _, by) in stats.items():
                key = _name(file, line, name)
                calls[key] += ncalls
                mine = callers.setdefault(key, Counter())
                for (cfile, cline, cname), value in by.items():
                    mine[_name(cfile, cline, cname)] += value[1] if isinstance(value, tuple) else value
        messages = sum(n for key, n in calls.items() if key.startswith(per + " "))
        if not messages:
            raise SystemExit(f"{pattern}: no call of {per!r}")
        return cls(calls, callers, messages)

    def per_message(self, key: str) -> float:
        return self.calls[key] / self.messages


def _name(file: str, line: int, name: str) -> str:
    return f"{name} ({'/'.join(file.split('/')[-2:])}:{line})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", help="statistics of the first server (a glob: every node of a cluster)")
    parser.add_argument("b", help="statistics of the second server (a glob)")
    parser.add_argument("--per", default="plain_privmsg_line", help="the function called once per message")
    parser.add_argument("--top", type=int, default=40, help="how many functions to list")
    parser.add_argument("--callers", metavar="TEXT", help="list the callers of the functions whose name holds TEXT")
    args = parser.parse_args()
    a, b = Side.load(args.a, args.per), Side.load(args.b, args.per)
    print(f"messages: A {a.messages:,}, B {b.messages:,}")
    print(f"calls per message: A {sum(a.calls.values()) / a.messages:.1f}, B {sum(b.calls.values()) / b.messages:.1f}")
    if args.callers:
        for side, label in ((a, "A"), (b, "B")):
            for key in sorted(k for k in side.callers if args.callers in k):
                print(f"\n{label}: {key}, {side.per_message(key):.2f} a message, called by:")
                for caller, n in side.callers[key].most_common(args.top):
                    print(f"  {n / side.messages:7.2f}  {caller}")
        return
    keys = set(a.calls) | set(b.calls)
    rows = sorted(keys, key=lambda k: -abs(a.per_message(k) - b.per_message(k)))[: args.top]
    print("\n      A        B      A-B  function (calls per message, largest differences first)")
    for key in rows:
        pa, pb = a.per_message(key), b.per_message(key)
        print(f"{pa:7.2f}  {pb:7.2f}  {pa - pb:+7.2f}  {key}")


if __name__ == "__main__":
    main()
