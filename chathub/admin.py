"""Operator commands on a server's database, safe while the server runs.

    python -m chathub.admin [--config FILE] [--data-dir DIR] backup PATH [--replace]
    python -m chathub.admin [--config FILE] [--data-dir DIR] stats [--json]

The config is read as ``twistd chathub`` reads it (``--config`` and ``--data-dir`` mean the
same), so the command finds the server's database. ``backup`` copies an SQLite database
with SQLite's online backup API into a new private file (for PostgreSQL it says how to use
pg_dump); ``stats`` counts accounts, rooms and history. Run it as the server's user: the
database is private to it. It builds only the store (``chathub.store``), no hub, no reactor.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from typing import Optional, TextIO

from chathub.config import Config, ConfigError, load_config
from chathub.store import StorageError, open_store
from chathub.store.interfaces import StoreStats


def read_config(path: Optional[str], data_dir: Optional[str]) -> Config:
    """The config ``twistd chathub --config path --data-dir data_dir`` would run with."""
    config = load_config(path)
    return config.with_overrides(server={"data_dir": data_dir} if data_dir else {})


def _when(seconds: Optional[float]) -> str:
    return "-" if seconds is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]  # a float from here on, for the figure shown
    raise AssertionError("unreachable")


def format_stats(stats: StoreStats, config: Config) -> str:
    """``stats`` for people: one fact a line."""
    history = config.history
    if history.max_age_days or history.max_per_target:
        rules = []
        if history.max_age_days:
            rules.append(f"max_age_days = {history.max_age_days:g} ({stats.prunable_by_age} rows due now)")
        if history.max_per_target:
            rules.append(f"max_per_target = {history.max_per_target} ({stats.prunable_by_count} rows due now)")
        retention = ", ".join(rules) + f", applied every {history.prune_interval_seconds:g} s"
    else:
        retention = "keep everything (history.max_age_days and max_per_target are 0)"
    lines = [
        ("database", stats.database),
        ("schema version", str(stats.schema_version)),
        ("size", _size(stats.size_bytes)),
        ("accounts", str(stats.accounts)),
        ("persistent rooms", str(stats.persistent_rooms)),
        ("rooms with history", str(stats.rooms_with_history)),
        ("private conversations", str(stats.private_conversations)),
        ("events", str(stats.events)),
        ("history rows", str(stats.history_rows)),
        ("oldest event", _when(stats.oldest)),
        ("newest event", _when(stats.newest)),
        ("retention", retention),
    ]
    return "\n".join(f"{name + ':':<23}{value}" for name, value in lines)


def main(argv: Optional[list[str]] = None, out: TextIO = sys.stdout) -> int:
    """Run one command; 0 on success, 1 with one line on stderr when it cannot be done."""
    parser = argparse.ArgumentParser(prog="python -m chathub.admin", description=__doc__.split("\n")[0])
    parser.add_argument("--config", "-c", help="the server's TOML config file (as twistd chathub --config)")
    parser.add_argument("--data-dir", help="overrides server.data_dir (as twistd chathub --data-dir)")
    commands = parser.add_subparsers(dest="command", required=True)
    backup = commands.add_parser("backup", help="copy the SQLite database to PATH while the server runs")
    backup.add_argument("path", metavar="PATH")
    backup.add_argument("--replace", action="store_true", help="replace PATH if it exists")
    stats = commands.add_parser("stats", help="accounts, rooms, history and database size")
    stats.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    args = parser.parse_args(argv)
    try:
        config = read_config(args.config, args.data_dir)
        store = open_store(config)
        if args.command == "backup":
            started = time.monotonic()
            size = store.backup(args.path, replace=args.replace)
            print(
                f"backed up {store.description} to {args.path} ({_size(size)}, "
                f"{time.monotonic() - started:.1f} s)",
                file=out,
            )
        else:
            result = store.stats()
            if args.json:
                print(json.dumps(dataclasses.asdict(result), sort_keys=True), file=out)
            else:
                print(format_stats(result, config), file=out)
    except (ConfigError, StorageError) as e:
        print(f"chathub.admin: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
