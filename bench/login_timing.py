#!/usr/bin/env python3
"""How long a refused login takes, by what was wrong: the timing oracle check (issue 10, item 10).

Starts ``twistd chathub`` on 127.0.0.1 with a password file account (``alice``), a database
account (``bob``, made with IRC REGISTER) and an IRC operator (``admin``), all with the default
argon2 parameters, then times over real IRC sockets, alternating the kinds:

- SASL PLAIN as a name nobody has, as ``alice`` and as ``bob`` with a wrong password
  (send of the last AUTHENTICATE to 904);
- OPER with a name that is no operator and as ``admin`` with a wrong password (send to 464).

Each attempt comes from its own source address (127.0.0.2, .3, ...: loopback is all of
127/8 on Linux), so no attempt waits behind the failed-login delays of another, and prints
the median and quartiles per kind. If the kinds differ, a client can tell which names exist.

With ``--attack N``, it measures something else: how long a right password takes while N
attacker connections (spread over ``--attack-addresses`` addresses, 127.0.3.x) guess passwords
over SASL in a loop, as fast as the server answers them (``[irc]`` flood control on).

    python bench/login_timing.py                 # this tree, 25 attempts per kind
    python bench/login_timing.py --repo /work/main --samples 40
    python bench/login_timing.py --attack 60 --attack-addresses 6 --samples 20
"""
from __future__ import annotations

import argparse
import base64
import itertools
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(BENCH_DIR)
PASSWORD = "right-password-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Irc:
    """A blocking IRC client bound to one source address."""

    def __init__(self, port: int, source: str) -> None:
        self.sock = socket.socket()
        self.sock.bind((source, 0))
        self.sock.settimeout(120)
        self.sock.connect(("127.0.0.1", port))
        self.buffer = b""

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r\n")

    def expect(self, *commands: str) -> str:
        while True:
            while b"\n" not in self.buffer:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise EOFError("server closed the connection")
                self.buffer += chunk
            raw, self.buffer = self.buffer.split(b"\n", 1)
            line = raw.decode("utf-8", "replace").rstrip("\r")
            words = line.split()
            if words[:1] == ["PING"]:
                self.send("PONG " + words[1])
                continue
            command = words[1] if line.startswith(":") and len(words) > 1 else (words[0] if words else "")
            if command in commands:
                return line

    def close(self) -> None:
        self.sock.close()


def sasl_time(port: int, source: str, name: str, password: str, expect: str = "904") -> float:
    c = Irc(port, source)
    try:
        c.send("CAP LS 302")
        c.send("CAP REQ :sasl")
        c.expect("CAP")
        c.send("AUTHENTICATE PLAIN")
        c.expect("AUTHENTICATE")
        blob = base64.b64encode(f"{name}\0{name}\0{password}".encode()).decode()
        start = time.perf_counter()
        c.send(f"AUTHENTICATE {blob}")
        reply = c.expect("903", "904")
        elapsed = time.perf_counter() - start
        assert f" {expect} " in reply, reply
        return elapsed
    finally:
        c.close()


def oper_time(port: int, source: str, nick: str, name: str, password: str) -> float:
    c = Irc(port, source)
    try:
        c.send(f"NICK {nick}")
        c.send(f"USER {nick} 0 * :timing")
        c.expect("001")
        start = time.perf_counter()
        c.send(f"OPER {name} {password}")
        reply = c.expect("381", "464", "491")
        elapsed = time.perf_counter() - start
        assert " 464 " in reply, reply
        return elapsed
    finally:
        c.close()


def register_bob(port: int) -> None:
    c = Irc(port, "127.0.0.1")
    try:
        c.send("NICK bob")
        c.send("USER bob 0 * :timing")
        c.expect("001")
        c.send(f"REGISTER * * {PASSWORD}")
        reply = c.expect("REGISTER", "FAIL")
        assert "SUCCESS" in reply, reply
        c.send("QUIT")
    finally:
        c.close()


def attacker(port: int, source: str, stop: threading.Event, counts: dict) -> None:
    """Guess alice's password over SASL in a loop until ``stop``; reconnect when dropped."""
    guesses = itertools.count()
    while not stop.is_set():
        try:
            c = Irc(port, source)
        except OSError:
            continue
        try:
            c.send("CAP LS 302")
            c.send("CAP REQ :sasl")
            c.expect("CAP")
            while not stop.is_set():
                c.send("AUTHENTICATE PLAIN")
                c.expect("AUTHENTICATE")
                blob = base64.b64encode(f"alice\0alice\0guess{next(guesses)}".encode()).decode()
                c.send(f"AUTHENTICATE {blob}")
                c.expect("904")
                counts[source] = counts.get(source, 0) + 1
        except (OSError, EOFError):
            pass
        finally:
            c.close()


def under_attack(port: int, connections: int, addresses: int, samples: int) -> tuple[list[float], dict]:
    stop = threading.Event()
    counts: dict = {}
    sources = [f"127.0.3.{1 + i % addresses}" for i in range(connections)]
    workers = [threading.Thread(target=attacker, args=(port, s, stop, counts), daemon=True) for s in sources]
    for w in workers:
        w.start()
    deadline = time.monotonic() + 120
    while sum(counts.values()) < connections and time.monotonic() < deadline:
        time.sleep(0.1)  # until as many answers as attackers: the attack is in full swing
    honest = [sasl_time(port, "127.0.0.2", "alice", PASSWORD, expect="903") for _ in range(samples)]
    stop.set()
    for w in workers:
        w.join(60)
    return honest, counts


def start_server(repo: str, workdir: str, port: int, flood_exempt: bool = True) -> subprocess.Popen:
    from argon2 import PasswordHasher

    hasher = PasswordHasher()
    with open(os.path.join(workdir, "passwd"), "w") as f:
        f.write(f"alice:{hasher.hash(PASSWORD)}\n")
    os.chmod(os.path.join(workdir, "passwd"), 0o600)
    config = os.path.join(workdir, "chathub.toml")
    with open(config, "w") as f:
        f.write(
            f'[server]\ndata_dir = "{workdir}"\n'
            f'[listeners]\nline = []\nhttp = []\nirc = ["tcp:{port}:interface=127.0.0.1"]\n'
            f'[irc]\nflood_exempt = {["127.0.0.0/8"] if flood_exempt else []}\n'
            f'[[irc.operators]]\nname = "admin"\npassword_hash = "{hasher.hash(PASSWORD)}"\n'
        )
    env = dict(os.environ, PYTHONPATH=repo, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
         "--logfile=-", "chathub", "--config", config],
        cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    ready = threading.Event()

    def read() -> None:
        for raw in process.stdout:
            if b"starting on" in raw:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(60):
        process.kill()
        raise SystemExit("the server did not start")
    return process


def summary(times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    q = statistics.quantiles(ms, n=4)
    return f"median {statistics.median(ms):7.1f} ms   quartiles {q[0]:7.1f} .. {q[2]:7.1f} ms   n={len(ms)}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", default=REPO_DIR, help="the chathub tree to run (default: this one)")
    parser.add_argument("--samples", type=int, default=25, help="attempts per kind (at most 45)")
    parser.add_argument("--attack", type=int, default=0, help="attacker connections (0: time refusals)")
    parser.add_argument("--attack-addresses", type=int, default=1, help="addresses they come from")
    args = parser.parse_args()
    samples = min(args.samples, 45)
    port = free_port()
    if args.attack:
        with tempfile.TemporaryDirectory() as workdir:
            process = start_server(os.path.abspath(args.repo), workdir, port, flood_exempt=False)
            try:
                honest, counts = under_attack(port, args.attack, args.attack_addresses, samples)
            finally:
                process.terminate()
                process.wait(30)
        print(f"{args.repo}: a right SASL password from 127.0.0.2 while {args.attack} connections from "
              f"{args.attack_addresses} addresses guess")
        print(f"  honest login              {summary(honest)}   max {max(honest) * 1000:.1f} ms")
        print(f"  attacker guesses answered {sum(counts.values())}")
        return 0
    with tempfile.TemporaryDirectory() as workdir:
        process = start_server(os.path.abspath(args.repo), workdir, port)
        try:
            register_bob(port)
            sources = (f"127.0.{b}.{c}" for b in range(1, 3) for c in range(2, 255))
            kinds = {
                "SASL unknown name        ": lambda s: sasl_time(port, s, "nobody", "wrong-password"),
                "SASL alice (file), wrong ": lambda s: sasl_time(port, s, "alice", "wrong-password"),
                "SASL bob (store), wrong  ": lambda s: sasl_time(port, s, "bob", "wrong-password"),
                "OPER unknown name        ": lambda s: oper_time(port, s, f"t{s.replace('.', '')}", "nobody", "wrong"),
                "OPER admin, wrong        ": lambda s: oper_time(port, s, f"t{s.replace('.', '')}", "admin", "wrong"),
            }
            times: dict[str, list[float]] = {k: [] for k in kinds}
            for _ in range(samples):
                for kind, attempt in kinds.items():
                    times[kind].append(attempt(next(sources)))
        finally:
            process.terminate()
            process.wait(30)
    print(f"{args.repo}: refused logins, {samples} per kind, each from its own address")
    for kind, values in times.items():
        print(f"  {kind} {summary(values)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
