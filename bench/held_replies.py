#!/usr/bin/env python3
"""How long a cluster node's replies wait while its rooms are held: two cluster nodes behind
one ``reuseport:`` port (as ``bench/run.py --nodes 2``) under the *rooms* load (1000 clients
over 100 rooms, every room with members on both nodes, so each node often holds a room whose
own message got a number above the other node's still on its way), and two more IRC clients
on that port: one in no room, one in a busy room (``#bench0``). Over the generator's measure
phase each sends ``PING`` after ``PING``, one at a time, and times each ``PONG``.

    python bench/held_replies.py               # 3 runs, PONG round trips per probe
    python bench/held_replies.py --runs 5 --duration 20
    python bench/held_replies.py --lone        # the same load on one lone node (PostgreSQL)

The kernel picks each probe's node; both nodes hold rooms alike. A lone node never holds a
room: there (``--lone``), a PONG waits only for what concerns its user and was accepted
before the PING (for the probe in ``#bench0``, that room's messages; for the one in no room,
nothing: ``Outbox.after``), and for the reactor, busy delivering committed groups, to read
the PING; so does it on a cluster node.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from typing import Any, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import run as bench  # noqa: E402  (bench/run.py: servers, pinning, PostgreSQL, Redis)
import split  # noqa: E402  (bench/split.py: the rooms generator)


class Probe:
    """One IRC client that joins ``room`` (or none) and times PING after PING."""

    def __init__(self, port: int, nick: str, room: Optional[str]) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buffer = b""
        self.nick = nick
        self.rtts: list[float] = []
        self._send(f"NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n")
        self._until(b" 001 ")
        if room:
            self._send(f"JOIN {room}\r\n")
            self._until(b" 366 ")

    def _send(self, text: str) -> None:
        self.sock.sendall(text.encode())

    def _until(self, marker: bytes) -> None:
        """Read lines (answering the server's PINGs) until one holds ``marker``."""
        while True:
            while b"\r\n" not in self.buffer:
                data = self.sock.recv(65536)
                if not data:
                    raise RuntimeError(f"{self.nick}: connection closed")
                self.buffer += data
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            if line.startswith(b"PING "):
                self._send("PONG " + line[5:].decode() + "\r\n")
            elif marker in line:
                return

    def ping_until(self, stop: threading.Event) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            started = time.monotonic()
            self._send(f"PING :probe{n}\r\n")
            self._until(f"probe{n}".encode())
            self.rtts.append((time.monotonic() - started) * 1000)
            time.sleep(0.01)  # pacing: about a hundred PINGs a second, not a flood

    def close(self) -> None:
        try:
            self._send("QUIT\r\n")
        finally:
            self.sock.close()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def one_run(args: argparse.Namespace, options: argparse.Namespace) -> dict[str, Any]:
    if options.lone:
        server = bench.start_server("chathub", {"irc"}, args)
        pids = [server.proc.pid]
    else:
        server = bench.start_cluster({"irc"}, args, nodes=2)
        pids = [proc.pid for proc in server.procs]
    port = server.ports["irc"]
    try:
        loadgen = split.generator(args, options, port, 1, pids, stderr=subprocess.PIPE)
        assert loadgen.stderr is not None and loadgen.stdout is not None
        for line in loadgen.stderr:  # the generator announces its phases on stderr
            if line.startswith("loadgen: phase measure"):
                break
        probes = {"in no room": Probe(port, "probeout", None), "in #bench0": Probe(port, "probein", "#bench0")}
        stop = threading.Event()
        threads = [threading.Thread(target=p.ping_until, args=(stop,), daemon=True) for p in probes.values()]
        for thread in threads:
            thread.start()
        time.sleep(options.duration * 0.6)  # most of the measure phase: the load is on
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        for probe in probes.values():
            probe.close()
        loadgen.stdout.read()
        loadgen.wait()
    finally:
        bench.stop_server(server)
    return {name: probe.rtts for name, probe in probes.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--duration", type=int, default=10, help="seconds of the generator's sending")
    p.add_argument("--nice", type=int, default=-10)
    p.add_argument("--lone", action="store_true", help="one lone node on PostgreSQL instead of the two nodes")
    options, rest = p.parse_known_args()
    args = bench.parse_args(["--nice", str(options.nice), "--nodes", "2", *rest])
    bench.NICE = args.nice
    args.redis = bench.RedisForBench()
    bench.build_loadgen()
    bench.raise_fd_limit()
    every: dict[str, list[float]] = {}
    try:
        for run in range(options.runs):
            result = one_run(args, options)
            for name, rtts in result.items():
                every.setdefault(name, []).extend(rtts)
                print(f"run {run + 1}, probe {name}: {len(rtts)} PINGs, PONG after median "
                      f"{statistics.median(rtts):.1f} ms, p99 {percentile(rtts, 0.99):.1f}, max {max(rtts):.1f}",
                      flush=True)
    finally:
        args.redis.stop()
    for name, rtts in every.items():
        print(f"all runs, probe {name}: {len(rtts)} PINGs, PONG after median {statistics.median(rtts):.1f} ms, "
              f"p90 {percentile(rtts, 0.9):.1f}, p99 {percentile(rtts, 0.99):.1f}, max {max(rtts):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
