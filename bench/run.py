#!/usr/bin/env python3
"""Benchmark runner: chathub against Twisted Words, side by side, interleaved.

For every scenario and run it starts a fresh server pinned to CPU 0 (``taskset -c 0``),
runs the C load generator (``bench/loadgen``) pinned to CPU 1 against it, and stops the
server.  Servers alternate within each run so drifting machine state hits both alike.
It prints a Markdown table of medians with the ratio chathub / Twisted Words per figure
and writes the raw results and the table to ``bench/results/``.

    python bench/run.py                       # everything, 3 runs each
    python bench/run.py --quick               # small smoke run, 1 run each
    python bench/run.py --scenarios fanout,rate --runs 5
    python bench/run.py --server twisted-words --set fanout.clients=200
    python bench/run.py --ngircd              # ngIRCd as a third server in fanout, rooms and rate
    python bench/run.py --nodes 2 --scenarios fanout,rooms   # 2 cluster nodes against 1 node
    python bench/run.py --metrics compare --scenarios fanout,rooms --runs 5   # [metrics] on vs off

With ``--nodes N`` the columns are chathub as N cluster nodes (one ``reuseport:`` port per
protocol, PostgreSQL as the store, a redis-server the run starts) against chathub as one node
on the same PostgreSQL; the nodes share the server's CPU, so the table shows what a node
costs per delivery (deliveries per server CPU-second) rather than what more cores would give.

With ``--metrics compare`` the columns are chathub with ``[metrics]`` on (as shipped: every
counter and the latency histogram kept; nothing scrapes during the run) against chathub with
it off (no counters at all); ``--metrics off`` runs every chathub server with it off.

Every load goes to 127.0.0.1 and is bounded in connections, messages and time.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from stages import read_stacks  # bench/stages.py, beside this script

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(BENCH_DIR)
LOADGEN = os.path.join(BENCH_DIR, "loadgen")
TAC = os.path.join(BENCH_DIR, "twisted_words.tac")
MAX_CLIENTS = 10_000
SERVERS = ("chathub", "twisted-words")
#: --ngircd: ngIRCd (Debian's package) as a third server, for the IRC scenarios
NGIRCD = "ngircd"
NGIRCD_CONF = os.path.join(BENCH_DIR, "ngircd.conf")
#: --nodes N: the server name of N cluster nodes (set in main)
CLUSTER = "chathub-cluster"
#: --nodes N --one-node: a cluster of one node, measured beside the N nodes and the lone node
ONE_NODE = "chathub x1 node"
#: --metrics compare: chathub a second time, with [metrics] off (the first one has it on)
METRICS_OFF = "chathub metrics-off"
LISTEN_BACKLOG = 1024

# Scenario parameters: full run, and --quick.  Keys are loadgen options.
SCENARIOS: dict[str, dict[str, dict[str, Any]]] = {
    "fanout": {
        "full": {"clients": 1000, "senders": 1, "window": 64, "duration": 10},
        "quick": {"clients": 100, "senders": 1, "window": 64, "duration": 2},
    },
    "rooms": {
        "full": {"clients": 1000, "rooms": 100, "window": 4, "duration": 10},
        "quick": {"clients": 100, "rooms": 10, "window": 4, "duration": 2},
    },
    "rate": {
        "full": {"clients": 1000, "senders": 1, "rate": 50, "duration": 10},
        "quick": {"clients": 100, "senders": 1, "rate": 50, "duration": 2},
    },
    "idle": {
        "full": {"clients": 10000, "hold": 2},
        "quick": {"clients": 300, "hold": 0.5},
    },
    # idle browsers: logged-in chathub.v1 WebSocket connections (loadgen's idle scenario)
    "idle-ws": {
        "full": {"clients": 3000, "hold": 2, "protocol": "ws-json"},
        "quick": {"clients": 300, "hold": 0.5, "protocol": "ws-json"},
    },
    "mixed": {
        "full": {"clients": 999, "senders": 3, "window": 16, "duration": 10, "mix": "line,irc,ws-json"},
        "quick": {"clients": 99, "senders": 3, "window": 16, "duration": 2, "mix": "line,irc,ws-json"},
    },
}
# Scenarios a server cannot run: Twisted Words and ngIRCd speak only IRC, and ngIRCd resets
# connections that arrive faster than it registers them (idle's 10,000 fail by hundreds).
UNSUPPORTED = {("twisted-words", "mixed"), ("twisted-words", "idle-ws"), (NGIRCD, "mixed"), (NGIRCD, "idle-ws"),
               (NGIRCD, "idle")}
#: scenarios that run another one of loadgen's with other parameters
LOADGEN_SCENARIO = {"idle-ws": "idle"}


# --------------------------------------------------------------------------------------
# figures: how each scenario's result becomes table rows


@dataclass(frozen=True)
class Figure:
    """One row of the table: a name, how to read it from loadgen's JSON, which way is better."""

    name: str
    get: Callable[[dict], Optional[float]]
    unit: str = ""
    better: str = "higher"  # or "lower"
    fmt: str = "{:,.0f}"


def _dig(*path: str) -> Callable[[dict], Optional[float]]:
    def get(d: dict) -> Optional[float]:
        for p in path:
            if not isinstance(d, dict) or p not in d:
                return None
            d = d[p]
        return d

    return get


def _lat_ms(*path: str) -> Callable[[dict], Optional[float]]:
    inner = _dig(*path)

    def get(d: dict) -> Optional[float]:
        v = inner(d)
        return None if v is None else v / 1000.0

    return get


def _rss_kib(d: dict) -> Optional[float]:
    v = _dig("idle", "server_rss_per_connection_bytes")(d)
    return None if v is None else v / 1024.0


def _per_cpu_second(d: dict) -> Optional[float]:
    m = d.get("measure") or {}
    dps, cpu = m.get("deliveries_per_second"), m.get("server_cpu")
    return dps / cpu if dps and cpu else None


# perf stat events counted with --syscalls (SyscallCounter), each shown a message sent
SYSCALL_EVENTS = {
    "raw_syscalls:sys_enter": "server system calls a message sent",
    "syscalls:sys_enter_sendto": "server sends a message sent",
    "syscalls:sys_enter_recvfrom": "server receives a message sent",
    "syscalls:sys_enter_epoll_wait": "server polls a message sent",
    "context-switches": "server context switches a message sent",
}

COMMON_TAIL = [
    Figure("deliveries per server CPU-second", _per_cpu_second),
    Figure("messages lost", _dig("measure", "lost"), better="lower"),
    Figure("connections dropped", _dig("dropped"), better="lower"),
    Figure("server CPU (cores)", _dig("measure", "server_cpu"), better="info", fmt="{:.2f}"),
    *(Figure(label, _dig("measure", "syscalls_" + event), better="info", fmt="{:.2f}")
      for event, label in SYSCALL_EVENTS.items()),
    Figure("server user CPU a message sent", _dig("measure", "server_user_us_per_message"), "us", "info",
           "{:.1f}"),
    Figure("server system CPU a message sent", _dig("measure", "server_system_us_per_message"), "us", "info",
           "{:.1f}"),
    Figure("generator CPU (cores)", _dig("measure", "gen_cpu"), better="info", fmt="{:.2f}"),
    Figure("server's core: softirq", _dig("measure", "server_core_irq"), better="info", fmt="{:.2f}"),
    Figure("server's core: other processes", _dig("measure", "server_core_other"), better="info", fmt="{:.2f}"),
]

FIGURES: dict[str, list[Figure]] = {
    "fanout": [
        Figure("deliveries/s", _dig("measure", "deliveries_per_second")),
        Figure("latency p50", _lat_ms("measure", "latency_us", "p50"), "ms", "lower", "{:,.1f}"),
        Figure("latency p99", _lat_ms("measure", "latency_us", "p99"), "ms", "lower", "{:,.1f}"),
        Figure("registrations/s", _dig("register", "per_second")),
        *COMMON_TAIL,
    ],
    "rooms": [
        Figure("deliveries/s", _dig("measure", "deliveries_per_second")),
        Figure("latency p50", _lat_ms("measure", "latency_us", "p50"), "ms", "lower", "{:,.1f}"),
        Figure("latency p99", _lat_ms("measure", "latency_us", "p99"), "ms", "lower", "{:,.1f}"),
        *COMMON_TAIL,
    ],
    "rate": [
        Figure("messages/s sent", _dig("measure", "messages_per_second"), better="info", fmt="{:,.1f}"),
        Figure("latency p50", _lat_ms("measure", "latency_us", "p50"), "ms", "lower", "{:,.2f}"),
        Figure("latency p99", _lat_ms("measure", "latency_us", "p99"), "ms", "lower", "{:,.2f}"),
        Figure("latency max", _lat_ms("measure", "latency_us", "max"), "ms", "lower", "{:,.2f}"),
        *COMMON_TAIL,
    ],
    "idle": [
        Figure("server RSS per connection", _rss_kib, "KiB", "lower", "{:,.2f}"),
        Figure("registrations/s", _dig("register", "per_second")),
        Figure("registered", _dig("register", "registered"), better="info"),
        Figure("connections dropped", _dig("dropped"), better="lower"),
        Figure("server CPU while registering", _dig("register", "server_cpu"), better="info", fmt="{:.2f}"),
        Figure("generator CPU while registering", _dig("register", "gen_cpu"), better="info", fmt="{:.2f}"),
        Figure("server's core: other processes", _dig("register", "server_core_other"), better="info",
               fmt="{:.2f}"),
    ],
    "idle-ws": [
        Figure("server RSS per connection", _rss_kib, "KiB", "lower", "{:,.2f}"),
        Figure("registrations/s", _dig("register", "per_second")),
        Figure("registered", _dig("register", "registered"), better="info"),
        Figure("connections dropped", _dig("dropped"), better="lower"),
    ],
    "mixed": [
        Figure("deliveries/s", _dig("measure", "deliveries_per_second")),
        Figure("latency p99", _lat_ms("measure", "latency_us", "p99"), "ms", "lower", "{:,.1f}"),
        *[
            f
            for proto in ("line", "irc", "ws-json", "ws-irc")
            for f in (
                Figure(f"{proto}: deliveries/s", _dig("per_protocol", proto, "deliveries_per_second")),
                Figure(f"{proto}: latency p99", _lat_ms("per_protocol", proto, "latency_us", "p99"), "ms", "lower",
                       "{:,.1f}"),
                Figure(f"{proto}: lost", _dig("per_protocol", proto, "lost"), better="lower"),
            )
        ],
        *COMMON_TAIL,
    ],
}


# --------------------------------------------------------------------------------------
# processes


def free_port() -> int:
    """A port the kernel just handed out on 127.0.0.1 (closed again before use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on 127.0.0.1:{port} within {timeout:.0f}s")


def raise_fd_limit() -> None:
    """Lets the server (and the generator) hold 10,000 sockets; ``ulimit -n`` does the same."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = MAX_CLIENTS + 1024
    if soft >= want:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, hard), max(want, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def twistd_command() -> list[str]:
    exe = os.path.join(os.path.dirname(sys.executable), "twistd")
    if os.path.exists(exe):
        return [exe]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


#: scheduling priority for the server and the generator (set from --nice)
NICE = 0


def pinned(cpu: Optional[int], argv: list[str]) -> list[str]:
    """``argv`` pinned to ``cpu`` with taskset, at the --nice priority."""
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu), *argv]
    if NICE:
        argv = ["nice", "-n", str(NICE), *argv]
    return argv


def toml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid TOML basic string


@dataclass
class RunningServer:
    proc: subprocess.Popen
    ports: dict[str, int]
    workdir: str
    log: str
    #: every process of the server (the nodes of a cluster; ``proc`` is the first)
    procs: list[subprocess.Popen] = field(default_factory=list)
    #: run after the processes stopped (a PostgreSQL schema to drop)
    cleanup: list[Callable[[], None]] = field(default_factory=list)
    #: each node's own ports, when its nodes do not share them (``start_cluster(own_ports=True)``)
    node_ports: list[dict[str, int]] = field(default_factory=list)


# Settings the benchmark needs from chathub: the generator's senders are a trusted
# local source (Twisted Words has no flood control either).
CHATHUB_BENCH_SETTINGS: dict[str, dict[str, Any]] = {
    # every protocol: telnet, IRC, chathub.v1; and 10,000 connections from one address, opened
    # as fast as they are accepted
    "limits": {"flood_exempt": ["127.0.0.1"], "connection_limits_exempt": ["127.0.0.1"]},
}


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return toml_str(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise ValueError(f"cannot write {v!r} as a TOML value here")


def toml_dump(config: dict[str, dict[str, Any]]) -> str:
    """TOML for a two-level mapping (tables of settings), enough for the generated config."""
    out = ["# generated by bench/run.py"]
    for table, settings in config.items():
        out += ["", f"[{table}]"]
        for key, value in settings.items():
            if isinstance(value, dict):
                raise ValueError(f"[{table}.{key}]: nested tables are not supported in --chathub-extra")
            out.append(f"{key} = {toml_value(value)}")
    return "\n".join(out) + "\n"


def chathub_config(ports: dict[str, int], data_dir: str, extra: str, endpoint: str = "tcp",
                   settings: Optional[dict[str, dict[str, Any]]] = None) -> str:
    """chathub's TOML: only the listeners this scenario uses, the bench settings, then
    ``settings`` (a cluster node's), then --chathub-extra."""
    listen = {
        kind: ([f"{endpoint}:{ports[kind]}:interface=127.0.0.1:backlog={LISTEN_BACKLOG}"] if kind in ports else [])
        for kind in ("irc", "line", "http")
    }
    config: dict[str, dict[str, Any]] = {"server": {"data_dir": data_dir}, "listeners": listen}
    for source in (CHATHUB_BENCH_SETTINGS, settings or {}, tomllib.loads(extra) if extra else {}):
        for table, settings in source.items():
            if not isinstance(settings, dict):
                raise SystemExit(f"--chathub-extra: {table!r} must be a table")
            config.setdefault(table, {}).update(settings)
    return toml_dump(config)


def postgres_schema(args: argparse.Namespace, name: str) -> tuple[str, Callable[[], None]]:
    """A fresh schema on --postgres-dsn: (the DSN whose tables land in it, its dropper)."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    schema = f"bench_{name.replace('-', '_')}_{os.getpid()}_{int(time.time() * 1000)}"
    with psycopg.connect(args.postgres_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")

    def drop() -> None:
        with psycopg.connect(args.postgres_dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")

    return make_conninfo(args.postgres_dsn, options=f"-c search_path={schema}"), drop


class RedisForBench:
    """The redis-server of a --nodes run (its own port, nothing kept on disk)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.workdir = tempfile.mkdtemp(prefix="bench-redis-")
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("--nodes needs redis-server (Debian: apt-get install redis-server)")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.workdir],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        wait_listening(self.port, self.proc, 10)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.workdir, ignore_errors=True)


def wait_logged(path: str, pattern: str, proc: subprocess.Popen, timeout: float) -> None:
    """Until the log at ``path`` has a line matching ``pattern`` (a node's listener is up)."""
    regex = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode}; log: {path}")
        try:
            with open(path, errors="replace") as f:
                if any(regex.search(line) for line in f):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"no log line matching {pattern!r} in {path} within {timeout:.0f}s")


def node_cpu(args: argparse.Namespace, i: int) -> Optional[int]:
    """The CPU node ``i`` of a --nodes run is pinned to: --node-cpus in turn, else --server-cpu."""
    if args.server_cpu is None or not args.node_cpus:
        return args.server_cpu
    return args.node_cpus[i % len(args.node_cpus)]


def cprofile_argv(stats: Optional[str]) -> list[str]:
    """twistd's options that run the server under cProfile and save its statistics to
    ``stats`` when it stops (--cprofile); none without a path."""
    return [] if stats is None else ["--profile", stats, "--profiler", "cprofile", "--savestats"]


def server_process(cpu: Optional[int], argv: list[str], cwd: str, stdout: str,
                   env: Optional[dict[str, str]] = None) -> subprocess.Popen:
    """A server's process, pinned to ``cpu``, its output to ``stdout``."""
    return subprocess.Popen(pinned(cpu, argv), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=open(stdout, "w"), stderr=subprocess.STDOUT, preexec_fn=raise_fd_limit)


def listening(server: RunningServer, wait: Callable[[], None]) -> RunningServer:
    """``server`` once ``wait`` returns; stopped (its files kept) when it raises."""
    try:
        wait()
    except RuntimeError:
        stop_server(server, keep=True)
        raise
    return server


def start_cluster(kinds: set[str], args: argparse.Namespace, stats: Optional[str] = None,
                  nodes: Optional[int] = None, own_ports: bool = False) -> RunningServer:
    """--nodes N (or ``nodes``) chathub processes sharing one port per protocol
    (``reuseport:``), one PostgreSQL schema and one Redis, all pinned to the server's CPU;
    with ``stats``, each node under cProfile (``<stats>-nodeK.cprofile``); with
    ``own_ports``, each node on ports of its own (``node_ports``: bench/split.py)."""
    workdir = tempfile.mkdtemp(prefix="bench-cluster-")
    ports = {kind: free_port() for kind in sorted(kinds)}
    node_ports: list[dict[str, int]] = []
    dsn, drop = postgres_schema(args, "cluster")
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO_DIR + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    procs: list[subprocess.Popen] = []
    logs: list[str] = []
    prefix = f"b{os.getpid()}x{int(time.time() * 1000) % 100000}"
    for i in range(args.nodes if nodes is None else nodes):
        node_dir = os.path.join(workdir, f"n{i}")
        os.makedirs(node_dir)
        log = os.path.join(node_dir, "server.log")
        config = os.path.join(node_dir, "chathub.toml")
        settings = {
            "storage": {"backend": "postgres", "postgres_dsn": dsn},
            "cluster": {"enabled": True, "redis_url": f"redis://127.0.0.1:{args.redis.port}/0",
                        "node_id": f"n{i}", "key_prefix": prefix},
            "metrics": {"enabled": args.metrics != "off"},
        }
        if own_ports:
            node_ports.append(ports if i == 0 else {kind: free_port() for kind in sorted(kinds)})
        with open(config, "w") as f:
            f.write(chathub_config(node_ports[i] if own_ports else ports, os.path.join(node_dir, "data"),
                                   args.chathub_extra, "tcp" if own_ports else "reuseport", settings))
        node_stats = None if stats is None else f"{stats}-node{i + 1}.cprofile"
        argv = twistd_command() + ["-n", "--pidfile=", "-l", log, *cprofile_argv(node_stats)]
        argv += ["chathub", "--config", config]
        procs.append(server_process(node_cpu(args, i), argv, REPO_DIR, os.path.join(node_dir, "stdout.log"), env))
        logs.append(log)
    server = RunningServer(procs[0], ports, workdir, logs[0], procs, [drop], node_ports)

    def wait() -> None:
        for i, (proc, log) in enumerate(zip(procs, logs, strict=True)):
            for port in (node_ports[i] if own_ports else ports).values():
                wait_logged(log, rf"starting on {port}$", proc, args.start_timeout)

    return listening(server, wait)


def start_server(name: str, kinds: set[str], args: argparse.Namespace, stats: Optional[str] = None) -> RunningServer:
    """``name`` started on free ports for ``kinds`` of listener; with ``stats`` (--cprofile),
    under cProfile, its statistics saved to ``<stats>.cprofile`` when it stops."""
    if name == CLUSTER:
        return start_cluster(kinds, args, stats)
    if name == ONE_NODE:
        return start_cluster(kinds, args, stats, nodes=1)
    if name == NGIRCD:
        return start_ngircd(kinds, args)
    workdir = tempfile.mkdtemp(prefix=f"bench-{name}-")
    log = os.path.join(workdir, "server.log")
    ports = {kind: free_port() for kind in sorted(kinds)}
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO_DIR + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    base = twistd_command() + ["-n", "--pidfile=", "-l", log]
    base += cprofile_argv(None if stats is None else stats + ".cprofile")
    cleanup = []
    if name == "twisted-words":
        env["BENCH_TW_PORT"] = str(ports["irc"])
        env["BENCH_TW_BACKLOG"] = str(LISTEN_BACKLOG)
        argv = base + ["-y", TAC]
    else:
        config = os.path.join(workdir, "chathub.toml")
        settings: dict[str, dict[str, Any]] = {}
        cleanup: list[Callable[[], None]] = []
        if args.nodes > 1:  # the one node the cluster is measured against: on PostgreSQL too
            dsn, drop = postgres_schema(args, name)
            settings = {"storage": {"backend": "postgres", "postgres_dsn": dsn}}
            cleanup.append(drop)
        settings["metrics"] = {"enabled": metrics_on(name, args)}
        with open(config, "w") as f:
            f.write(chathub_config(ports, os.path.join(workdir, "data"), args.chathub_extra, settings=settings))
        argv = base + ["chathub", "--config", config]
    proc = server_process(args.server_cpu, argv, workdir if name == "twisted-words" else REPO_DIR,
                          os.path.join(workdir, "stdout.log"), env)
    server = RunningServer(proc, ports, workdir, log, [proc], cleanup if name != "twisted-words" else [])

    def wait() -> None:
        for port in ports.values():
            wait_listening(port, proc, args.start_timeout)

    return listening(server, wait)


def ngircd_config(port: int, pidfile: str) -> str:
    """bench/ngircd.conf with this run's port and pid file."""
    with open(NGIRCD_CONF) as f:
        text = f.read()
    text = re.sub(r"(?m)^(\s*Ports = ).*$", lambda m: m.group(1) + str(port), text)
    return re.sub(r"(?m)^(\s*PidFile = ).*$", lambda m: m.group(1) + pidfile, text)


def start_ngircd(kinds: set[str], args: argparse.Namespace) -> RunningServer:
    """ngIRCd in the foreground on a free port with bench/ngircd.conf's settings (--ngircd)."""
    if kinds != {"irc"}:
        raise RuntimeError(f"ngIRCd speaks only IRC, not {sorted(kinds)}")
    ngircd = shutil.which("ngircd") or ("/usr/sbin/ngircd" if os.path.exists("/usr/sbin/ngircd") else None)
    if ngircd is None:
        raise RuntimeError("--ngircd needs ngIRCd (apt install ngircd)")
    workdir = tempfile.mkdtemp(prefix="bench-ngircd-")
    os.chmod(workdir, 0o755)  # ngIRCd started as root may drop to another user
    ports = {"irc": free_port()}
    config = os.path.join(workdir, "ngircd.conf")
    with open(config, "w") as f:
        f.write(ngircd_config(ports["irc"], os.path.join(workdir, "ngircd.pid")))
    log = os.path.join(workdir, "stdout.log")
    proc = server_process(args.server_cpu, [ngircd, "-n", "-f", config], workdir, log)
    server = RunningServer(proc, ports, workdir, log, [proc], [])
    return listening(server, lambda: wait_listening(ports["irc"], proc, args.start_timeout))


def metrics_on(name: str, args: argparse.Namespace) -> bool:
    """Whether the chathub server ``name`` runs with [metrics] on (--metrics)."""
    return name != METRICS_OFF and args.metrics != "off"


def stop_server(server: RunningServer, keep: bool = False) -> None:
    for proc in server.procs or [server.proc]:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in server.procs or [server.proc]:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for cleanup in server.cleanup:
        try:
            cleanup()
        except Exception as e:  # a bench that cannot drop its schema still reports its figures
            print(f"cleanup failed: {e}", file=sys.stderr)
    if not keep:
        shutil.rmtree(server.workdir, ignore_errors=True)


def tail(path: str, n: int = 15) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


# --------------------------------------------------------------------------------------
# one measurement


def loadgen_argv(scenario: str, params: dict[str, Any], server: RunningServer, server_name: str) -> list[str]:
    argv = [LOADGEN, "--scenario", LOADGEN_SCENARIO.get(scenario, scenario)]
    for proc in server.procs or [server.proc]:  # every node's CPU and RSS, summed
        argv += ["--server-pid", str(proc.pid)]
    for key, value in params.items():
        if key == "mix":
            continue
        argv += [f"--{key.replace('_', '-')}", str(value)]
    if scenario == "mixed":
        argv += ["--mix", params["mix"]]
    if "irc" in server.ports:
        argv += ["--irc-port", str(server.ports["irc"])]
    if "line" in server.ports:
        argv += ["--line-port", str(server.ports["line"])]
    if "http" in server.ports:
        argv += ["--ws-port", str(server.ports["http"])]
    if server_name == NGIRCD and "connect_window" not in params:
        # ngIRCd resets connections beyond a few dozen unregistered ones at once; the
        # measure phase does not depend on how fast the clients came in
        argv += ["--connect-window", "16"]
    if server_name == "twisted-words":
        argv += ["--irc-pass", "bench"]  # Twisted Words logs nobody in without a password
    return argv


def listener_kinds(scenario: str, params: dict[str, Any]) -> set[str]:
    """The listeners a scenario's protocols need (``--set idle.protocol=ws-json``: browsers)."""
    protocols = params["mix"].split(",") if scenario == "mixed" else [params.get("protocol", "irc")]
    return {{"irc": "irc", "line": "line", "ws-json": "http", "ws-irc": "http"}[p] for p in protocols}


def run_stem(args: argparse.Namespace, scenario: str, server_name: str, run: int) -> str:
    """The name the files of one server's run start with (profiles, statistics)."""
    return f"{args.stamp}-{scenario}-{server_name.replace(' ', '-')}-run{run + 1}"


class SyscallCounter:
    """Counts the server's system calls over the measure phase (``--syscalls``).

    Runs ``perf stat`` on every server process from the generator's ``measure`` phase to
    its next one, counting tracepoints: exact counts, unlike CPU time on a shared VM, so
    two servers' sends, receives and polls a message can be compared across runs minutes
    apart. (``/proc/<pid>/io`` does not count socket calls.) It also reads each process's
    user and system CPU time (``/proc/<pid>/stat``) at both ends: the system part holds the
    sends and receives, loopback TCP included, the user part the server's own code.
    """

    def __init__(self, args: argparse.Namespace, pids: list[int]) -> None:
        self.wanted = bool(args.syscalls)
        self.pids = pids
        self.proc: Optional[subprocess.Popen] = None
        self.path = ""
        self.times: Optional[tuple[int, int]] = None  # user and system clock ticks at the start
        self.cpu: Optional[tuple[float, float]] = None  # user and system seconds over the phase

    def _times(self) -> Optional[tuple[int, int]]:
        user = system = 0
        try:
            for pid in self.pids:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                user += int(fields[11])  # utime, the 14th field of stat(5)
                system += int(fields[12])
        except (OSError, ValueError, IndexError):
            return None
        return user, system

    def phase(self, name: str) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)
            end = self._times()
            if self.times is not None and end is not None and self.cpu is None:
                tick = os.sysconf("SC_CLK_TCK")
                self.cpu = ((end[0] - self.times[0]) / tick, (end[1] - self.times[1]) / tick)
            return
        if not self.wanted or name != "measure":
            return
        self.times = self._times()
        perf = shutil.which("perf")
        if perf is None:
            print("warning: --syscalls needs perf (Debian: linux-perf)", file=sys.stderr)
            self.wanted = False
            return
        fd, self.path = tempfile.mkstemp(prefix="chathub-perf-", suffix=".csv")
        os.close(fd)
        self.proc = subprocess.Popen(
            [perf, "stat", "-x", ",", "-o", self.path, "-e", ",".join(SYSCALL_EVENTS),
             "-p", ",".join(map(str, self.pids))],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def figures(self, measure: dict) -> None:
        """Adds each counted event a message sent to loadgen's figures."""
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        sent = measure.get("sent") or 0
        if self.cpu is not None and sent:
            measure["server_user_us_per_message"] = self.cpu[0] / sent * 1e6
            measure["server_system_us_per_message"] = self.cpu[1] / sent * 1e6
        try:
            with open(self.path) as f:
                lines = f.read().splitlines()
            os.unlink(self.path)
        except OSError:
            return
        for line in lines:
            fields = line.split(",")
            if len(fields) > 2 and fields[2] in SYSCALL_EVENTS and sent:
                try:
                    measure["syscalls_" + fields[2]] = float(fields[0]) / sent
                except ValueError:
                    pass


class Profiler:
    """Samples the server with py-spy during the phase that matters (--profile).

    Message scenarios are profiled while measuring, ``idle`` while registering (and only
    then: the sampling stops when the generator's next phase begins). The output is
    py-spy's collapsed stacks (``frame;frame;... count``), plus a summary of the functions
    with the most samples, on their own and with what they call.
    """

    def __init__(self, args: argparse.Namespace, scenario: str, params: dict[str, Any], server_name: str,
                 pids: list[int], run: int) -> None:
        # "chathub" also profiles every node of a --nodes cluster, each in its own file
        self.wanted = args.profile in (server_name, "both") or (
            args.profile == "chathub" and server_name in (CLUSTER, ONE_NODE))
        idle = LOADGEN_SCENARIO.get(scenario, scenario) == "idle"
        self.target = "register" if idle else "measure"
        self.seconds = float(params.get("duration", 10)) if not idle else 10.0
        stem = run_stem(args, scenario, server_name, run)
        stems = [stem] if len(pids) == 1 else [f"{stem}-node{i + 1}" for i in range(len(pids))]
        self.paths = [os.path.join(args.out, s + ".pyspy.txt") for s in stems]
        self.summary_paths = [os.path.join(args.out, s + ".profile.txt") for s in stems]
        self.pids = pids
        self.procs: list[subprocess.Popen] = []
        self.output: Optional[dict] = None

    def phase(self, name: str) -> None:
        if self.procs and name != self.target:
            # the phase is over: py-spy writes what it has on SIGINT (idle's registration
            # takes a second or two; the rest of its run is pings and holding)
            for proc in self.procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
            return
        if not self.wanted or self.procs or name != self.target:
            return
        py_spy = shutil.which("py-spy")
        if py_spy is None:
            print("warning: --profile needs py-spy (pip install py-spy)", file=sys.stderr)
            self.wanted = False
            return
        self.procs = [
            subprocess.Popen(
                [py_spy, "record", "--pid", str(pid), "--duration", str(max(1, int(self.seconds))),
                 "--rate", "250", "--nonblocking", "--format", "raw", "--output", path],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            for pid, path in zip(self.pids, self.paths, strict=True)
        ]

    def finish(self) -> None:
        for proc in self.procs:
            try:
                proc.wait(timeout=self.seconds + 30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        done = [(path, summary) for path, summary in zip(self.paths, self.summary_paths, strict=True)
                if self.procs and os.path.exists(path)]
        for path, summary_path in done:
            summary = summarize_profile(path)
            with open(summary_path, "w") as f:
                f.write(summary)
            print(summary, file=sys.stderr)
        if done:
            self.output = {"stacks": [p for p, _ in done], "summary": [s for _, s in done]}


def summarize_profile(path: str, top: int = 20) -> str:
    """The functions with the most samples in py-spy collapsed stacks: self and inclusive."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for stack, n in read_stacks(path):
        total += n
        # "func (path/file.py:123)" -> "func (path/file.py)": one row per function
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack]
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + n
    if not total:
        return f"profile {path}: no samples\n"
    out = [f"profile {path}: {total} samples", "", "self %  function"]
    out += [f"{100 * n / total:6.1f}  {fn}" for fn, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]]
    out += ["", "total %  function (with callees)"]
    out += [f"{100 * n / total:6.1f}  {fn}" for fn, n in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]]
    return "\n".join(out) + "\n"


def measure(scenario: str, params: dict[str, Any], server_name: str, args: argparse.Namespace, run: int = 0) -> dict:
    """Starts the server, runs the generator once, stops the server; returns loadgen's JSON."""
    started = time.monotonic()
    stats = None
    if args.cprofile:
        stats = os.path.join(args.out, run_stem(args, scenario, server_name, run))
    server = start_server(server_name, listener_kinds(scenario, params), args, stats)
    keep = False
    try:
        argv = pinned(args.loadgen_cpu, loadgen_argv(scenario, params, server, server_name))
        hard = float(params.get("timeout", args.timeout))
        argv += ["--timeout", str(hard)]
        pids = [p.pid for p in server.procs or [server.proc]]
        profiler = Profiler(args, scenario, params, server_name, pids, run)
        syscalls = SyscallCounter(args, pids)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=raise_fd_limit)
        stderr_lines: list[str] = []

        def read_stderr() -> None:
            for line in proc.stderr:
                stderr_lines.append(line)
                if line.startswith("loadgen: phase "):
                    syscalls.phase(line.split()[-1])
                    profiler.phase(line.split()[-1])

        stdout_parts: list[str] = []

        def read_stdout() -> None:
            stdout_parts.append(proc.stdout.read())

        # one reader per pipe: ``communicate`` would read stderr too, and the phase lines
        # the profiler starts on went to whichever reader came first
        readers = [threading.Thread(target=read_stderr, daemon=True), threading.Thread(target=read_stdout, daemon=True)]
        for reader in readers:
            reader.start()
        try:
            proc.wait(timeout=hard + 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            keep = True
            return {"ok": False, "error": "loadgen did not exit", "server_log": server.workdir}
        finally:
            for reader in readers:
                reader.join(timeout=5)
            profiler.finish()
        stdout = "".join(stdout_parts)
        try:
            result = json.loads(stdout)
        except json.JSONDecodeError:
            keep = True
            err = "".join(line for line in stderr_lines if not line.startswith("loadgen: phase "))
            return {"ok": False, "error": f"loadgen status {proc.returncode}: {err.strip()[-500:]}",
                    "server_log": server.workdir}
        if profiler.output:
            result["profile"] = profiler.output
        if isinstance(result.get("measure"), dict):
            syscalls.figures(result["measure"])
        if server.proc.poll() is not None:
            result["ok"] = False
            result["error"] = f"server exited with status {server.proc.returncode}"
        if not result.get("ok"):
            keep = True
            result["server_log"] = server.workdir
            result["server_log_tail"] = tail(server.log)
        # How busy the server's core was, by anyone: more than the server's own CPU
        # means other processes (or interrupts) competed with it during the run.
        # Interrupt time (loopback TCP runs in softirq) is not charged to any process.
        for phase in ("measure", "register", "idle"):
            busy = (result.get(phase) or {}).get("cpu_busy") or []
            irq = (result.get(phase) or {}).get("cpu_irq") or []
            if args.server_cpu is not None and args.server_cpu < min(len(busy), len(irq)):
                result[phase]["server_core_busy"] = busy[args.server_cpu]
                result[phase]["server_core_irq"] = irq[args.server_cpu]
                own = result[phase].get("server_cpu") or 0.0
                result[phase]["server_core_other"] = max(0.0, busy[args.server_cpu] - irq[args.server_cpu] - own)
        result["command"] = " ".join(argv)
        result["run_seconds"] = time.monotonic() - started
        return result
    finally:
        stop_server(server, keep=keep or args.keep)
        if args.keep:
            print(f"kept {server.workdir}", file=sys.stderr)


# --------------------------------------------------------------------------------------
# report


def median(values: list[Optional[float]]) -> Optional[float]:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def fmt(fig: Figure, v: Optional[float]) -> str:
    if v is None:
        return "–"
    return fig.fmt.format(v)


def ratio(fig: Figure, a: Optional[float], b: Optional[float]) -> str:
    if a is None or b is None or fig.better == "info":
        return ""
    if b == 0:
        return "" if a == 0 else "∞"
    return f"{a / b:.2f}×"


def summarize(results: dict[str, dict[str, list[dict]]], servers: list[str]) -> tuple[str, dict]:
    """Markdown table and a JSON summary of medians and ratios."""
    head = "| scenario | figure | " + " | ".join(servers)
    # the columns of ratios: (numerator, denominator)
    ratios: list[tuple[str, str]] = []
    main_ratio_to = servers[-1]  # whose ratio the JSON summary calls "ratio"
    if servers[0] == "chathub" and {"twisted-words", NGIRCD} & set(servers):
        for other, title in (("twisted-words", "Twisted Words"), (NGIRCD, "ngIRCd")):
            if other in servers:
                ratios.append(("chathub", other))
                head += f" | chathub / {title}"
        main_ratio_to = ratios[0][1]
    elif servers[0] == CLUSTER:
        ratios = [(CLUSTER, other) for other in servers[1:]]
        head += "".join(f" | {a} / {b}" for a, b in ratios)
    lines = [head + " |", "|" + "---|" * (head.count("|"))]
    summary: dict[str, Any] = {}
    for scenario, by_server in results.items():
        if not by_server:
            continue  # no chosen server can run it (Twisted Words speaks only IRC)
        summary[scenario] = {}
        for fig in FIGURES[scenario]:
            meds = {s: median([fig.get(r) for r in by_server.get(s, []) if r.get("ok")]) for s in servers}
            if all(v is None for v in meds.values()):
                continue
            label = fig.name + (f" ({fig.unit})" if fig.unit else "")
            if fig.better in ("higher", "lower"):
                label += " ↑" if fig.better == "higher" else " ↓"
            row = f"| {scenario} | {label} | " + " | ".join(fmt(fig, meds[s]) for s in servers)
            entry = {s: meds[s] for s in servers}
            for a, b in ratios:
                r = ratio(fig, meds[a], meds[b])
                row += f" | {r}"
                entry["ratio" if b == main_ratio_to else f"ratio to {b}"] = r or None
            lines.append(row + " |")
            summary[scenario][fig.name] = entry
        for s in servers:
            runs = by_server.get(s, [])
            ok = sum(1 for r in runs if r.get("ok"))
            summary[scenario].setdefault("_runs", {})[s] = f"{ok}/{len(runs)}"
        lines.append(
            f"| {scenario} | runs ok | "
            + " | ".join(summary[scenario]["_runs"][s] if by_server.get(s) else "n/a" for s in servers)
            + " |" * (len(ratios) + 1)
        )
    return "\n".join(lines), summary


def machine_description() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
            mem = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    import twisted

    return (f"{model}, {os.cpu_count()} cores{mem}, Linux {platform.release()}, "
            f"Python {platform.python_version()}, Twisted {twisted.__version__}")


# --------------------------------------------------------------------------------------
# main


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", choices=("both", *SERVERS), default="both", help="which servers to run")
    p.add_argument("--ngircd", action="store_true",
                   help="also run ngIRCd (apt install ngircd; bench/ngircd.conf's settings) in the IRC "
                        "scenarios, a third column with its ratio")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated: " + ", ".join(SCENARIOS))
    p.add_argument("--runs", type=int, default=None, help="runs per scenario and server (default 3; --quick: 1)")
    p.add_argument("--quick", action="store_true", help="small sizes and short runs: a smoke test")
    p.add_argument("--set", action="append", default=[], metavar="SCENARIO.KEY=VALUE",
                   help="override a loadgen option, e.g. fanout.clients=200 or rate.rate=100 (repeatable)")
    p.add_argument("--duration", type=float, help="seconds of sending for every message scenario")
    p.add_argument("--timeout", type=float, default=180, help="hard limit per generator run (s)")
    p.add_argument("--start-timeout", type=float, default=30, help="seconds to wait for a server to listen")
    p.add_argument("--chathub-extra", default="", metavar="TOML",
                   help="TOML text appended to chathub's generated config (e.g. '[history]\\nenabled = false')")
    p.add_argument("--server-cpu", type=int, default=0, help="CPU the server is pinned to")
    p.add_argument("--loadgen-cpu", type=int, default=1, help="CPU the generator is pinned to")
    p.add_argument("--no-pin", action="store_true", help="do not use taskset")
    p.add_argument("--nice", type=int, default=0,
                   help="run server and generator at this nice value (negative, as root, to take precedence "
                        "over other load on a shared machine)")
    p.add_argument("--nodes", type=int, default=1,
                   help="N > 1: chathub as N cluster nodes against chathub as one node, both on PostgreSQL")
    p.add_argument("--postgres-dsn", default=os.environ.get("CHATHUB_BENCH_POSTGRES_DSN",
                                                           "host=127.0.0.1 user=postgres dbname=postgres"),
                   help="PostgreSQL for --nodes (a schema per run, dropped after it)")
    p.add_argument("--metrics", choices=("on", "off", "compare"), default="on",
                   help="chathub with [metrics] on (the default, as shipped) or off; compare: chathub twice, "
                        "on and off, side by side (the issue's 'under 3%% of fanout and rooms throughput')")
    p.add_argument("--out", default=os.path.join(BENCH_DIR, "results"), help="directory for results")
    p.add_argument("--cprofile", action="store_true",
                   help="run every server under cProfile (twistd --profiler cprofile; several times slower) "
                        "and save its statistics beside the results: compare two with bench/calls.py")
    p.add_argument("--profile", nargs="?", const="chathub", choices=("chathub", "twisted-words", "both"),
                   help="sample the server with py-spy while measuring (idle: while registering); "
                        "writes collapsed stacks and a summary of the hottest functions to --out")
    p.add_argument("--node-cpus", type=lambda v: [int(c) for c in v.split(",")], default=None,
                   help="with --nodes: the CPUs the nodes are pinned to, in turn (e.g. 0,1: a node on each "
                        "core, the second beside the generator); default: every node on --server-cpu")
    p.add_argument("--one-node", action="store_true",
                   help="with --nodes: also measure a cluster of one node (cluster mode, PostgreSQL, Redis), "
                        "so the table shows what the second node costs apart from what cluster mode costs")
    p.add_argument("--syscalls", action="store_true",
                   help="count the server's system calls (sends, receives, polls) and context switches "
                        "a message over the measure phase with perf stat")
    p.add_argument("--keep", action="store_true",
                   help="keep every server's working directory (configuration, logs) after its run")
    args = p.parse_args(argv)
    if args.no_pin or shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
        if not args.no_pin:
            print("warning: not pinning (needs taskset and 2 CPUs)", file=sys.stderr)
        args.server_cpu = args.loadgen_cpu = None
    if args.runs is None:
        args.runs = 1 if args.quick else 3
    return args


def scenario_params(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for s in chosen:
        if s not in SCENARIOS:
            raise SystemExit(f"unknown scenario {s!r}; choose from {', '.join(SCENARIOS)}")
    params = {s: dict(SCENARIOS[s]["quick" if args.quick else "full"]) for s in chosen}
    for s in chosen:
        if args.duration and "duration" in params[s]:
            params[s]["duration"] = args.duration
    for item in args.set:
        try:
            key, value = item.split("=", 1)
            scen, opt = key.split(".", 1)
        except ValueError:
            raise SystemExit(f"--set wants SCENARIO.KEY=VALUE, not {item!r}")
        if scen in params:
            params[scen][opt.replace("-", "_")] = value
    for s, p in params.items():
        if int(p["clients"]) > MAX_CLIENTS:
            raise SystemExit(f"{s}: at most {MAX_CLIENTS} clients")
    return params


def progress_line(r: dict) -> str:
    """One line per run for the terminal."""
    if r.get("idle"):
        reg = r["register"]
        return (f"rss/conn={r['idle']['server_rss_per_connection_bytes'] / 1024:.2f}KiB "
                f"registered={reg['registered']} reg/s={reg['per_second']:,.0f} dropped={r['dropped']} "
                f"srvcpu={reg['server_cpu']:.2f} gencpu={reg['gen_cpu']:.2f}")
    m = r.get("measure") or {}
    return (f"deliveries/s={m.get('deliveries_per_second', 0):,.0f} "
            f"p50={m['latency_us']['p50'] / 1000:.1f}ms p99={m['latency_us']['p99'] / 1000:.1f}ms "
            f"lost={m.get('lost')} dropped={r.get('dropped')} "
            f"srvcpu={m.get('server_cpu', 0):.2f} gencpu={m.get('gen_cpu', 0):.2f}")


def build_loadgen() -> None:
    subprocess.run(["make", "-s", "-C", BENCH_DIR], check=True)


def main(argv: Optional[list[str]] = None) -> int:
    global NICE
    args = parse_args(argv)
    NICE = args.nice
    params = scenario_params(args)
    servers = list(SERVERS) if args.server == "both" else [args.server]
    if args.ngircd:
        servers.append(NGIRCD)
    if args.metrics == "compare":
        servers = ["chathub", METRICS_OFF]
    args.redis = None
    if args.nodes > 1:
        global CLUSTER
        CLUSTER = f"chathub x{args.nodes} nodes"
        servers = [CLUSTER, ONE_NODE, "chathub"] if args.one_node else [CLUSTER, "chathub"]
        args.redis = RedisForBench()
    build_loadgen()
    raise_fd_limit()
    os.makedirs(args.out, exist_ok=True)
    stamp = args.stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    started = datetime.datetime.now(datetime.timezone.utc)
    command = "python bench/run.py " + " ".join(argv if argv is not None else sys.argv[1:])

    results: dict[str, dict[str, list[dict]]] = {}
    failures = 0
    for scenario, p in params.items():
        results[scenario] = {s: [] for s in servers if (s, scenario) not in UNSUPPORTED}
        for run in range(args.runs):
            # alternate which server goes first so slow drifts hit both alike
            order = servers if run % 2 == 0 else list(reversed(servers))
            for server in order:
                if (server, scenario) in UNSUPPORTED:
                    continue
                print(f"[{scenario} run {run + 1}/{args.runs}] {server} ...", end=" ", file=sys.stderr, flush=True)
                try:
                    r = measure(scenario, p, server, args, run)
                except RuntimeError as e:
                    r = {"ok": False, "error": str(e)}
                results[scenario][server].append(r)
                if r.get("ok"):
                    print("ok  " + progress_line(r), file=sys.stderr)
                    m = r.get("measure") or {}
                    busy, irq, own = m.get("server_core_busy"), m.get("server_core_irq"), m.get("server_cpu")
                    if busy is not None and own is not None and busy - (irq or 0) - own > 0.1:
                        print(f"  note: the server's core was {busy:.0%} busy ({irq:.0%} softirq) but the server "
                              f"used {own:.0%}: other load on this machine", file=sys.stderr)
                else:
                    failures += 1
                    print(f"FAILED: {r.get('error')} {r.get('first_errors', '')} (logs: {r.get('server_log')})",
                          file=sys.stderr)

    table, summary = summarize(results, servers)
    header = (
        f"Date: {started:%Y-%m-%d %H:%M} UTC  \n"
        f"Machine: {machine_description()}  \n"
        f"Pinning: server{f' ({args.nodes} nodes)' if args.nodes > 1 else ''} on CPU "
        f"{','.join(map(str, args.node_cpus)) if args.nodes > 1 and args.node_cpus else args.server_cpu}, "
        f"generator on CPU {args.loadgen_cpu}"
        f"{f', nice {args.nice}' if args.nice else ''}  \n"
        f"Command: `{command}`  \n"
        f"Medians of {args.runs} run(s) per server; ↑ higher is better, ↓ lower is better.\n"
    )
    params_md = "\n".join(f"- {s}: " + ", ".join(f"{k}={v}" for k, v in p.items()) for s, p in params.items())
    report = f"{header}\n{table}\n\nScenario parameters:\n{params_md}\n"
    print(report)
    md_path = os.path.join(args.out, f"{stamp}.md")
    json_path = os.path.join(args.out, f"{stamp}.json")
    with open(md_path, "w") as f:
        f.write(report)
    with open(json_path, "w") as f:
        json.dump({"date": started.isoformat(), "machine": machine_description(), "command": command,
                   "params": params, "summary": summary, "results": results}, f, indent=1)
    print(f"wrote {md_path} and {json_path}", file=sys.stderr)
    if args.redis is not None:
        args.redis.stop()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
