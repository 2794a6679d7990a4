#!/usr/bin/env python3
"""What sharing one core costs N chathub processes that share nothing else: N lone nodes (no
cluster, each its own store), all pinned to the server's CPU, each driven by its own
generator with 1/N of the *rooms* load (1000/N clients over 100/N rooms: rooms of 10, as in
the full load), against one lone node with all of it. Deliveries per server CPU-second, the
CPU of every node summed, as ``bench/run.py --nodes N`` reports a cluster.

A cluster's nodes pay this too; what a cluster of N costs beyond it is its own work (each
message decoded, ordered and rendered on every node with members of its room, the relay's
bookkeeping). Same machine set-up as ``bench/run.py`` (generators on ``--loadgen-cpu``).

    python bench/split.py                       # 2 nodes against 1, 3 runs, SQLite
    python bench/split.py --postgres --runs 5   # each node on its own PostgreSQL schema
    python bench/split.py --cluster --runs 5    # N cluster nodes, each its own rooms, against 1 lone
    python bench/split.py --cluster --one-sender --runs 3   # all clients on node 1: what receiving costs

``--one-sender`` (with ``--cluster``) gives the whole load to the first node's generator and
none to the others, which only receive: each node's CPU per message sent, over the middle of
the measure phase (``/proc/PID/stat``), splits a cluster node's cost into sending (the first
node, against the lone node's) and receiving another node's messages (the others).

``--cluster`` runs the N nodes as one cluster (PostgreSQL, a redis-server of its own, as
``bench/run.py --nodes N``) but on ports of their own, each generator with rooms and nicks of
its own (``--room-prefix``, ``--nick-prefix``): no room has members on two nodes, so the
figure is cluster mode's cost (publishing, numbering, each node reading every other node's
groups) without any message delivered across nodes, which ``bench/run.py --nodes N`` adds.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import run as bench  # noqa: E402  (bench/run.py: servers, pinning, PostgreSQL schemas)


def start_nodes(args: argparse.Namespace, nodes: int, cluster: bool) -> tuple[list[Any], list[int], list[int]]:
    """(servers to stop, each node's pid, each node's IRC port) of ``nodes`` lone nodes, or of
    a cluster of ``nodes`` on ports of their own (``cluster``, more than one node)."""
    if cluster and nodes > 1:
        server = bench.start_cluster({"irc"}, args, nodes=nodes, own_ports=True)
        return [server], [proc.pid for proc in server.procs], [p["irc"] for p in server.node_ports]
    servers = []
    try:
        for _ in range(nodes):
            servers.append(bench.start_server("chathub", {"irc"}, args))
    except BaseException:
        for server in servers:
            bench.stop_server(server)
        raise
    return servers, [server.proc.pid for server in servers], [server.ports["irc"] for server in servers]


def generator(args: argparse.Namespace, options: argparse.Namespace, port: int, nodes: int, pids: list[int],
              prefix: str = "", stderr: Any = subprocess.DEVNULL) -> subprocess.Popen:
    """The *rooms* generator with 1/``nodes`` of the load (1000 clients over 100 rooms in all)
    on ``port``, reading the CPU of ``pids`` over its measure phase; ``prefix`` keeps its nicks
    and rooms apart from another generator's."""
    argv = [bench.LOADGEN, "--scenario", "rooms", "--clients", str(1000 // nodes), "--rooms", str(100 // nodes),
            "--window", "4", "--duration", str(options.duration), "--connect-window", "16",
            "--irc-port", str(port), "--timeout", str(options.duration + 120)]
    if prefix:
        argv += ["--nick-prefix", f"{prefix}u", "--room-prefix", f"#{prefix}r"]
    for pid in pids:
        argv += ["--server-pid", str(pid)]
    return subprocess.Popen(bench.pinned(args.loadgen_cpu, argv), stdout=subprocess.PIPE, stderr=stderr,
                            text=True, preexec_fn=bench.raise_fd_limit)


def measure(args: argparse.Namespace, options: argparse.Namespace, nodes: int) -> tuple[float, float, int]:
    """(deliveries/s summed over the generators, server CPU summed over the nodes, lost) of
    ``nodes`` lone nodes run at once, each with 1/``nodes`` of the load."""
    servers, pids, ports = start_nodes(args, nodes, options.cluster)
    try:
        # each generator reads every node's CPU over its measure phase
        generators = [generator(args, options, port, nodes, pids, f"g{i}") for i, port in enumerate(ports)]
        results = [json.loads(g.communicate(timeout=options.duration + 150)[0])["measure"] for g in generators]
    finally:
        for server in servers:
            bench.stop_server(server)
    deliveries = sum(r["deliveries_per_second"] for r in results)
    # the generators measure over (nearly) the same seconds: the mean of their readings
    cpu = statistics.mean(r["server_cpu"] for r in results)
    return deliveries, cpu, sum(int(r.get("lost") or 0) for r in results)


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of process ``pid`` (every thread) so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_one_sender(args: argparse.Namespace, options: argparse.Namespace, nodes: int) -> tuple[float, list[float]]:
    """(deliveries/s, each node's CPU microseconds per message) with the whole *rooms* load
    on the first of ``nodes`` (a cluster; one lone node when ``nodes`` is 1). Each node's CPU
    is read over the middle of the measure phase: from a quarter of it to three quarters."""
    servers, pids, ports = start_nodes(args, nodes, cluster=True)
    readings: list[tuple[float, list[float]]] = []
    try:
        loadgen = generator(args, options, ports[0], 1, pids[:1], stderr=subprocess.PIPE)

        def watch() -> None:  # the generator announces its phases on stderr
            for line in loadgen.stderr:
                if line.startswith("loadgen: phase measure"):
                    for wait in (options.duration / 4, options.duration / 2):
                        time.sleep(wait)
                        readings.append((time.monotonic(), [cpu_seconds(pid) for pid in pids]))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        result = json.loads(loadgen.stdout.read())["measure"]
        loadgen.wait()
        watcher.join(timeout=options.duration)
    finally:
        for server in servers:
            bench.stop_server(server)
    (t0, before), (t1, after) = readings
    messages = result["deliveries_per_second"] / 9  # rooms of 10: each message reaches 9
    seconds = t1 - t0
    per_node = [(b - a) / seconds / messages * 1e6 for a, b in zip(before, after, strict=True)]
    return result["deliveries_per_second"], per_node


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=2, help="lone nodes sharing the server's CPU (2, 4, 5 or 10)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--duration", type=int, default=10, help="seconds of sending")
    p.add_argument("--postgres", action="store_true", help="each node on its own schema of --postgres-dsn")
    p.add_argument("--cluster", action="store_true",
                   help="the N nodes as one cluster (PostgreSQL, Redis), rooms of each on one node")
    p.add_argument("--one-sender", action="store_true",
                   help="with --cluster: the whole load on the first node, the others only receive")
    p.add_argument("--nice", type=int, default=-10)
    options, rest = p.parse_known_args()
    if 100 % options.nodes:
        raise SystemExit("--nodes must divide 100 rooms evenly")
    if options.one_sender and not options.cluster:
        raise SystemExit("--one-sender needs --cluster")
    postgres = options.postgres or options.cluster
    args = bench.parse_args(["--nice", str(options.nice), *(["--nodes", str(options.nodes)] if postgres else []),
                             *rest])
    bench.NICE = args.nice
    args.redis = bench.RedisForBench() if options.cluster else None
    bench.build_loadgen()
    bench.raise_fd_limit()
    if options.one_sender:
        return one_sender(args, options)
    figures: dict[int, list[float]] = {1: [], options.nodes: []}
    for run in range(options.runs):
        order = [1, options.nodes] if run % 2 == 0 else [options.nodes, 1]  # drifts hit both alike
        for nodes in order:
            deliveries, cpu, lost = measure(args, options, nodes)
            figures[nodes].append(deliveries / cpu)
            print(f"run {run + 1}, {nodes} node(s): {deliveries:,.0f} deliveries/s, server CPU {cpu:.2f}, "
                  f"{deliveries / cpu:,.0f} per server CPU-second, lost {lost}", flush=True)
    if args.redis is not None:
        args.redis.stop()
    one, split = statistics.median(figures[1]), statistics.median(figures[options.nodes])
    kind = "cluster nodes (rooms apart)" if options.cluster else "lone nodes"
    print(f"medians of {options.runs}, deliveries per server CPU-second: {options.nodes} {kind} {split:,.0f}, "
          f"1 lone node {one:,.0f}: {split / one:.2f}x")
    return 0


def one_sender(args: argparse.Namespace, options: argparse.Namespace) -> int:
    """--one-sender: each node's CPU per message, one lone node and then the cluster, in turn."""
    costs: dict[int, list[list[float]]] = {1: [], options.nodes: []}
    for run in range(options.runs):
        order = [1, options.nodes] if run % 2 == 0 else [options.nodes, 1]
        for nodes in order:
            deliveries, per_node = measure_one_sender(args, options, nodes)
            costs[nodes].append(per_node)
            print(f"run {run + 1}, {nodes} node(s): {deliveries:,.0f} deliveries/s, CPU us a message by node: "
                  + ", ".join(f"{us:.2f}" for us in per_node), flush=True)
    if args.redis is not None:
        args.redis.stop()
    lone = statistics.median(c[0] for c in costs[1])
    medians = [statistics.median(c[i] for c in costs[options.nodes]) for i in range(options.nodes)]
    print(f"medians of {options.runs}, server CPU us a message: lone node {lone:.2f}; cluster: sending node "
          f"{medians[0]:.2f}, " + ", ".join(f"receiving node {us:.2f}" for us in medians[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
