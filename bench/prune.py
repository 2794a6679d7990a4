"""Retention on a large database: how long a prune of N rows takes, and what the reactor and
the messages sent meanwhile see.

    .venv/bin/python bench/prune.py                      # 1,000,000 rows, SQLite, batches of 500
    .venv/bin/python bench/prune.py --rows 200000 --batch 2000
    .venv/bin/python bench/prune.py --backend postgres --dsn "host=127.0.0.1 user=postgres dbname=postgres"

It fills a fresh database (SQLite in a temporary directory, or a schema of its own on
PostgreSQL, dropped after) with ``--rows`` events 60 days old over 100 rooms and
``--recent`` new ones, then runs ``store.prune`` with ``max_age_days = 30`` (what
``RetentionService`` runs every ``prune_interval_seconds``) while

- a 10 ms ``LoopingCall`` records how late each tick is: the longest reactor stall;
- a message is appended every 20 ms, as the hub does, and the time to its commit recorded:
  how long a message sent during the prune waits to be stored (and so delivered).

The same two figures are taken for ``--baseline`` seconds before the prune, for comparison.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from twisted.internet import defer, task  # noqa: E402

from chathub.config.storage import HistoryConfig  # noqa: E402
from chathub.events import EventIds, Kind, Source  # noqa: E402

TICK = 0.010
PROBE_EVERY = 0.020


class Meter:
    """The reactor's lateness and the commit latency of messages appended while it runs."""

    def __init__(self, reactor, store) -> None:
        self.reactor = reactor
        self.store = store
        self.ids = EventIds()
        self.source = Source(nick="probe", user="probe", host="example.test")
        self.stalls: list[float] = []
        self.latencies: list[float] = []
        self._last = time.monotonic()
        self._ticker = task.LoopingCall(self._tick)
        self._prober = task.LoopingCall(self._probe)

    def start(self) -> None:
        self.stalls, self.latencies = [], []
        self._last = time.monotonic()
        self._ticker.start(TICK, now=False)
        self._prober.start(PROBE_EVERY, now=False)

    def stop(self) -> None:
        self._ticker.stop()
        self._prober.stop()

    def _tick(self) -> None:
        now = time.monotonic()
        self.stalls.append(max(0.0, now - self._last - TICK))
        self._last = now

    def _probe(self) -> None:
        sent = time.monotonic()
        event = self.ids.make(Kind.MESSAGE, self.source, "#probe", "during")

        def committed(failure) -> None:
            if failure is None:
                self.latencies.append(time.monotonic() - sent)

        self.store.append(event, notify=committed)

    def report(self, label: str) -> str:
        lat = sorted(self.latencies) or [0.0]
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        return (
            f"{label}: longest reactor stall {max(self.stalls or [0.0]) * 1000:.1f} ms "
            f"({len(self.stalls)} ticks of {TICK * 1000:.0f} ms); {len(self.latencies)} messages stored, "
            f"commit latency p50 {lat[len(lat) // 2] * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
            f"max {lat[-1] * 1000:.1f} ms"
        )


async def fill(store, rows: int, recent: int) -> None:
    now = time.time()
    old_clock = iter(range(int(now - 60 * 86400) * 1000, 2**60)).__next__
    old = EventIds(clock=lambda: old_clock() / 1000)
    new = EventIds()
    source = Source(nick="filler", user="filler", host="example.test")
    for ids, count in ((old, rows), (new, recent)):
        for start in range(0, count, 20_000):
            batch = [
                ids.make(Kind.MESSAGE, source, f"#room{i % 100}", f"message {i}")
                for i in range(start, min(count, start + 20_000))
            ]
            await defer.gatherResults([store.append(e) for e in batch])


async def run(reactor, args) -> None:
    history = HistoryConfig(max_age_days=30, prune_batch=args.batch)
    cleanup = None
    if args.backend == "postgres":
        import psycopg
        from psycopg.conninfo import make_conninfo

        from chathub.store.postgres import PostgresStore

        schema = f"bench_prune_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.dsn, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        store = PostgresStore(make_conninfo(args.dsn, options=f"-c search_path={schema}"), history)

        def cleanup() -> None:
            with psycopg.connect(args.dsn, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")
    else:
        from chathub.store.sqlite import SqliteStore

        directory = tempfile.mkdtemp(prefix="chathub-prune-")
        store = SqliteStore(os.path.join(directory, "chathub.sqlite3"), history)

        def cleanup() -> None:
            shutil.rmtree(directory)
    try:
        await store.open()
        started = time.monotonic()
        await fill(store, args.rows, args.recent)
        print(f"filled {args.rows:,} old + {args.recent:,} recent rows in {time.monotonic() - started:.1f} s")
        stats = store.stats()
        print(f"{stats.database}: {stats.history_rows:,} rows, {stats.size_bytes / 2**20:.0f} MiB, "
              f"{stats.prunable_by_age:,} due by max_age_days = 30")
        meter = Meter(reactor, store)
        meter.start()
        await task.deferLater(reactor, args.baseline, lambda: None)
        meter.stop()
        print(meter.report("before the prune"))
        meter.start()
        started = time.monotonic()
        removed = await store.prune()
        took = time.monotonic() - started
        meter.stop()
        print(f"pruned {removed:,} rows in {took:.1f} s ({removed / took:,.0f} rows/s, "
              f"batches of {args.batch}: {-(-removed // args.batch):,} transactions)")
        print(meter.report("during the prune"))
        after = store.stats()
        print(f"left: {after.history_rows:,} rows ({after.prunable_by_age} due)")
    finally:
        await store.close()
        if cleanup is not None:
            cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="old rows to prune")
    parser.add_argument("--recent", type=int, default=10_000, help="new rows that stay")
    parser.add_argument("--batch", type=int, default=HistoryConfig().prune_batch, help="[history] prune_batch")
    parser.add_argument("--baseline", type=float, default=5.0, help="seconds measured before the prune")
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--dsn", default="host=127.0.0.1 user=postgres dbname=postgres")
    args = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(run(reactor, args)))


if __name__ == "__main__":
    main()
