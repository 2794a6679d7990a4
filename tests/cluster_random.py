"""A seeded random driver of IRC and telnet clients over two real cluster nodes: JOIN, PART,
PRIVMSG, NICK, KICK, MODE, TOPIC, INVITE, RENAME, METADATA, AWAY, QUIT and reconnect on
either node, then every room's state compared from an observer on each node (NAMES, MODE,
TOPIC, the mask lists, WHO, LIST, METADATA of rooms and users). Not part of the suite (its
name is not ``test_*``): a tool that found node stalls and divergences no fixed test did.
Run it by path:

    ZZ_SEEDS=0,1,2 ZZ_STEPS=150 ZZ_MODE=persist .venv/bin/python -m pytest -q -p no:cacheprovider \
        tests/cluster_random.py

``ZZ_MODE=outsider``: observers sit in no room, so rooms end and are made again.
``ZZ_NODES=abc``: three nodes (a nick or room event may reach one node before another);
``ZZ_KILL=c``: node c is killed (``kill -9``) halfway and the others compared once they reaped
it (its actors reconnect to the others, under other nicks while its claims last).
``ZZ_RENAMES=0.2``: a fifth of the actions more rename rooms. Each seed's
report (actions, what diverged, each client's lines) goes to ``ZZ_OUT`` (/tmp/zz_rerun); a
node that stops answering is probed (its CPU time, a py-spy dump, a fresh sign-on) before
failing. A report of a run that diverged also holds each node's whole log and every numbered
event of the run (PostgreSQL's ``conversation_events``): the order every node applied, to
read a node's copy against; reruns of one seed each keep their own report (its name has the
time). It paces its actions by round trips to a node, never by sleeping.
docs/cluster.md, "limits", lists the races it may still show.
"""
from __future__ import annotations

import json
import os
import queue
import random
import re
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.cluster_support import cluster  # noqa: F401
from tests.store_fixtures import postgres_database, postgres_dsn  # noqa: F401

OUT = Path(os.environ.get("ZZ_OUT", "/tmp/zz_rerun"))
OUT.mkdir(exist_ok=True)
SEED0 = int(os.environ.get("ZZ_SEED0", "0"))
NSEEDS = int(os.environ.get("ZZ_NSEEDS", "3"))
STEPS = int(os.environ.get("ZZ_STEPS", "120"))
MODE = os.environ.get("ZZ_MODE", "persist")  # persist: observers sit in the base rooms
NODES = os.environ.get("ZZ_NODES", "ab")  # "abc": three nodes, an observer and four actors on each
KILL = os.environ.get("ZZ_KILL", "")  # a node to kill -9 halfway (its actors reconnect elsewhere)
#: the share of actions that rename a room (besides the 4% of the usual mix): renames race
#: with every other room event, the rarest and most tangled case
RENAMES = float(os.environ.get("ZZ_RENAMES", "0"))
BASE = ["#r0", "#r1", "#r2"]
POOL = ["#r0", "#r1", "#r2", "#r3", "#r4"]


class Client:
    def __init__(self, port: int, name: str):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.settimeout(None)  # the reader blocks; a quiet spell is not a close
        self.name = name
        self.q: "queue.Queue" = queue.Queue()
        self.closed = False
        self.why = ""
        self.all: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        buf = b""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    self.why = self.why or "eof"
                    break
                buf += chunk
                while b"\n" in buf:
                    raw, buf = buf.split(b"\n", 1)
                    line = raw.rstrip(b"\r").decode("utf-8", "replace")
                    if line.startswith("PING "):
                        self.send("PONG " + line[5:])
                    self.q.put(line)
        except OSError as e:
            self.why = self.why or repr(e)
        self.closed = True
        self.q.put(None)

    def send(self, line: str):
        try:
            self.sock.sendall((line + "\r\n").encode())
        except OSError:
            pass

    def get(self, timeout: float):
        try:
            line = self.q.get(timeout=timeout)
        except queue.Empty:
            return None
        if line is not None:
            self.all.append(line)
        return line

    def drain(self):
        while True:
            try:
                line = self.q.get_nowait()
            except queue.Empty:
                return
            if line is not None:
                self.all.append(line)

    def expect(self, pattern: str, timeout: float = 40.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.get(max(0.01, deadline - time.monotonic()))
            if line is None:
                if self.closed:
                    raise EOFError(self.name)
                continue
            if re.search(pattern, line):
                return line
        raise TimeoutError(f"{self.name}: {pattern}; last: {self.all[-10:]}")

    def close(self):
        self.why = self.why or "local"
        try:
            self.sock.close()
        except OSError:
            pass


_mark = [0]


def query(c: Client, command: str, timeout: float = 40.0) -> list[str]:
    _mark[0] += 1
    m = f"zz{_mark[0]}"
    c.drain()
    c.send(command)
    c.send(f"PING :{m}")
    lines = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = c.get(0.5)
        if line is None:
            if c.closed:
                c.drain()
                raise EOFError(f"{c.name} closed ({c.why}) during {command!r}; last: {c.all[-15:]}")
            continue
        if " PONG " in line and m in line:
            return lines
        lines.append(line)
    raise TimeoutError(f"query {command} at {c.name}")


def irc_connect(port, nick, name, caps=""):
    c = Client(port, name)
    if caps:
        c.send(f"CAP REQ :{caps}")
    c.send(f"NICK {nick}")
    c.send(f"USER {nick} 0 * :{nick}")
    if caps:
        c.expect(r" (ACK|NAK) ")
        c.send("CAP END")
    line = c.expect(r" (001|433|437) ")
    if " 001 " not in line:
        c.close()
        return None
    return c


def telnet_connect(port, nick, name):
    c = Client(port, name)
    c.send(f"/nick {nick}")
    line = c.expect(rf"you are {nick}|^! ")
    if not re.search(rf"you are {nick}", line):
        c.close()
        return None
    return c


class Actor:
    def __init__(self, k, kind, cap):
        self.k = k
        self.kind = kind  # irc / telnet
        self.cap = cap
        self.base = ("i" if kind == "irc" else "t") + str(k)
        self.nicks = [self.base, self.base + "x", self.base + "y"]
        self.nick = None
        self.c = None
        self.node = None


def normalize(lines, me):
    out = []
    for line in lines:
        if line.startswith("@"):
            line = line.split(" ", 1)[1]
        parts = line.split(" ")
        if len(parts) < 3 or not parts[1].isdigit():
            continue
        num = parts[1]
        rest = parts[3:]
        text = num + " " + " ".join(rest)
        out.append(text)
    return out


def snapshot(obs: Client, me: str, rooms):
    snap = {}
    listed = query(obs, "LIST")
    ls = sorted(" ".join(l.split(" ")[3:]) for l in listed if " 322 " in l)
    snap["LIST"] = ls
    names = set(rooms)
    for l in ls:
        names.add(l.split(" ")[0])
    for r in sorted(names):
        d = {}
        nm = query(obs, f"NAMES {r}")
        members = []
        sym = []
        for l in nm:
            if " 353 " in l:
                p = l.split(" ")
                sym.append(p[3])
                members += l.split(" :", 1)[1].split() if " :" in l else p[5:]
        d["names"] = sorted(set(sym)) + sorted(members)
        d["mode"] = [x for x in normalize(query(obs, f"MODE {r}"), me) if x.startswith(("324", "329", "403", "442"))]
        d["topic"] = [x for x in normalize(query(obs, f"TOPIC {r}"), me) if x[:3] in ("332", "333", "331", "403", "442")]
        for lm, num in (("b", "367"), ("e", "348"), ("I", "346")):
            d[lm] = sorted(x for x in normalize(query(obs, f"MODE {r} +{lm}"), me)
                           if x.startswith((num, "482", "403", "442")))
        who = []
        for x in normalize(query(obs, f"WHO {r}"), me):
            if x.startswith("352"):
                p = x.split(" ")
                # 352 #r user host server nick flags :hop real
                who.append(" ".join(p[1:7]))
        d["who"] = sorted(who)
        d["metadata"] = sorted(x for x in normalize(query(obs, f"METADATA {r} LIST"), me) if x.startswith("761"))
        snap[r] = d
    # each user's metadata as the observer's node has it
    users = {}
    for x in normalize(query(obs, "WHO *"), me):
        if x.startswith("352"):
            nick = x.split(" ")[5]
            users[nick] = sorted(y for y in normalize(query(obs, f"METADATA {nick} LIST"), me) if y.startswith("761"))
    snap["users"] = users
    return snap


def alike(snaps: dict) -> bool:
    """Whether every node's observer saw the same."""
    return len({json.dumps(snap, sort_keys=True) for snap in snaps.values()}) == 1


def node_errors(cluster):
    errs = {}
    for name, node in cluster.nodes.items():
        bad = [i for i, l in enumerate(node.log) if "Traceback" in l or "Unhandled" in l]
        if bad:
            errs[name] = ["\n".join(node.log[max(0, i - 3):i + 25]) for i in bad[:3]]
    return errs


def numbered_events(dsn: str) -> list[list]:
    """Every event the nodes numbered, by conversation and number: (conv, number, id, ms,
    kind, body)."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        return [list(row) for row in conn.execute(
            "SELECT conv, conv_seq, msgid, ms, kind, body FROM conversation_events ORDER BY conv, conv_seq")]


SEEDS = [int(x) for x in os.environ["ZZ_SEEDS"].split(",")] if os.environ.get("ZZ_SEEDS") else list(range(SEED0, SEED0 + NSEEDS))


@pytest.mark.timeout(600)
@pytest.mark.parametrize("seed", SEEDS)
def test_random(cluster, seed, postgres_dsn):  # noqa: F811 (the nodes' database)
    rng = random.Random(seed)
    ports = {}
    for n in NODES:
        line, irc = cluster(n)
        ports[n] = {"telnet": line, "irc": irc}
    log: list[str] = []
    clients: list[Client] = []
    live = list(NODES)  # the nodes not killed (``ZZ_KILL``)
    dead: list[str] = []  # the nicks the killed node held

    def note(s):
        log.append(f"{time.monotonic():.3f} {s}")

    obs = {}
    for n in NODES:
        c = irc_connect(ports[n]["irc"], f"obs{n}", f"obs{n}", "multi-prefix draft/channel-rename")
        assert c is not None
        obs[n] = c
        clients.append(c)
    persist = MODE == "persist"
    if persist:
        for r in BASE:
            obs["a"].send(f"JOIN {r}")
            obs["a"].expect(rf" 366 obsa {r} ")
        for n in NODES[1:]:
            for r in BASE:
                listed = time.monotonic() + 40
                # each LIST waits for its answer: asked again until the node lists the room
                while not any(" 322 " in l for l in query(obs[n], f"LIST {r}")) and time.monotonic() < listed:
                    pass
                obs[n].send(f"JOIN {r}")
                obs[n].expect(rf" 366 obs{n} {r} ")
                obs["a"].send(f"MODE {r} +o obs{n}")
    actors = []
    k = 0
    for n in NODES:
        for i in range(3):
            actors.append(Actor(k, "irc", rng.random() < 0.5))
            k += 1
        actors.append(Actor(k, "telnet", False))
        k += 1

    def connect(a: Actor, node):
        rng.shuffle(a.nicks)
        for nick in a.nicks + [a.base + "z" + str(rng.randrange(1000))]:
            note(f"{a.base} tries {nick} on {node}")
            if a.kind == "irc":
                c = irc_connect(ports[node]["irc"], nick, nick, "draft/channel-rename" if a.cap else "")
            else:
                c = telnet_connect(ports[node]["telnet"], nick, nick)
            if c is not None:
                a.c, a.nick, a.node = c, nick, node
                clients.append(c)
                note(f"{a.base} connects on {node} as {nick}")
                return
        raise AssertionError("no nick")

    for idx, a in enumerate(actors):
        connect(a, NODES[idx // 4])

    def nicks():
        return [a.nick for a in actors if a.nick]

    def rooms_pick():
        return rng.choice(POOL)

    def mask():
        a = rng.choice(actors)
        return rng.choice([f"{a.base}*!*@*", f"{a.nick}!*@*", f"m:{a.base}*"])

    def mode_change(room):
        choice = rng.choice("iklmntsbeIovXY")
        sign = rng.choice("+-")
        if choice == "k":
            return f"{sign}k k{rng.randrange(3)}"
        if choice == "l":
            return f"+l {rng.randrange(2, 9)}" if sign == "+" else "-l"
        if choice in "beI":
            return f"{sign}{choice} {mask() if choice == 'b' else mask().replace('m:', '')}"
        if choice in "ov":
            return f"{sign}{choice} {rng.choice(nicks())}"
        if choice == "X":
            return f"{sign}ov {rng.choice(nicks())} {rng.choice(nicks())}"
        if choice == "Y":
            return f"+im-t" if sign == "+" else "-im+t"
        return f"{sign}{choice}"

    def act(a: Actor):
        c = a.c
        r = rooms_pick()
        w = rng.random()
        irc = a.kind == "irc"
        if RENAMES and rng.random() < RENAMES:
            w = 0.85  # a rename
        if w < 0.14:
            key = rng.choice(["", "", " k0", " k1", " k2"])
            c.send(f"JOIN {r}{key}" if irc else f"/join {r}{key}")
            return f"JOIN {r}{key}"
        if w < 0.22:
            reason = rng.choice(["", " :bye", " :see ya"])
            c.send(f"PART {r}{reason}" if irc else f"/part {r}{reason.replace(':', '')}")
            return f"PART {r}{reason}"
        if w < 0.34:
            c.send(f"PRIVMSG {r} :hello {rng.randrange(100)}" if irc else f"/msg {r} hi")
            return f"MSG {r}"
        if w < 0.40:
            new = rng.choice([x for x in a.nicks if x != a.nick])
            c.send(f"NICK {new}" if irc else f"/nick {new}")
            old, a.nick = a.nick, new
            return f"NICK {old}->{new}"
        if w < 0.48:
            t = rng.choice(nicks())
            if irc:
                c.send(f"KICK {r} {t} :out")
            else:
                c.send(f"/room {r}")
                c.send(f"/kick {t} out")
            return f"KICK {r} {t}"
        if w < 0.72:
            m = mode_change(r)
            c.send(f"MODE {r} {m}" if irc else f"/mode {r} {m}")
            return f"MODE {r} {m}"
        if w < 0.78:
            text = rng.choice(["", "topic one", "topic two", "t3"])
            if irc:
                c.send(f"TOPIC {r} :{text}")
            else:
                c.send(f"/room {r}")
                c.send(f"/topic {text}" if text else "/topic")
            return f"TOPIC {r} {text}"
        if w < 0.83:
            t = rng.choice(nicks())
            c.send(f"INVITE {t} {r}" if irc else f"/invite {t} {r}")
            return f"INVITE {t} {r}"
        if w < 0.87:
            new = rng.choice(POOL)
            c.send(f"RENAME {r} {new} :moving" if irc else f"/rename {r} {new} moving")
            return f"RENAME {r} {new}"
        if w < 0.90 and irc:
            # draft/metadata-3: a room's key (its operators only) or the actor's own
            target = r if rng.random() < 0.6 else "*"
            key = rng.choice(["k0", "k1", "k2"])
            if rng.random() < 0.3:
                c.send(f"METADATA {target} SET {key}")
                return f"METADATA {target} unset {key}"
            value = f"v{rng.randrange(5)}"
            c.send(f"METADATA {target} SET {key} :{value}")
            return f"METADATA {target} {key}={value}"
        if w < 0.92:
            text = rng.choice(["", "lunch", "brb"])
            if irc:
                c.send(f"AWAY :{text}" if text else "AWAY")
            else:
                c.send(f"/away {text}" if text else "/away")
            return f"AWAY {text}"
        # quit and reconnect
        c.why = "local"
        c.send("QUIT :later" if irc else "/quit later")
        c.close()
        a.c = None
        node = rng.choice(live)
        note(f"{a.base} ({a.nick}) QUIT")
        a.nick = None
        connect(a, node)
        return f"reconnected on {node}"

    def observer_act():
        n = rng.choice(live)
        c = obs[n]
        r = rng.choice(BASE)
        w = rng.random()
        if w < 0.5:
            m = f"+{rng.choice('oov')} {rng.choice(nicks())}"
        elif w < 0.8:
            m = mode_change(r)
        else:
            t = rng.choice(nicks())
            c.send(f"KICK {r} {t} :obs")
            return f"obs{n} KICK {r} {t}"
        c.send(f"MODE {r} {m}")
        return f"obs{n} MODE {r} {m}"

    # every actor joins a couple of rooms first
    for a in actors:
        for r in rng.sample(POOL, 2):
            a.c.send(f"JOIN {r}" if a.kind == "irc" else f"/join {r}")
            note(f"{a.base}@{a.node} ({a.nick}) JOIN {r}")

    def run_steps(rng, actors, persist, observer_act, act, note, clients):
      for step in range(STEPS):
        if KILL and step == STEPS // 2:
            kill_node(KILL)
        if persist and rng.random() < 0.3:
            note(observer_act())
        else:
            a = rng.choice(actors)
            what = act(a)
            note(f"{a.base}@{a.node} ({a.nick}) {what}")
        if rng.random() < 0.3:  # a burst: one more right away, likely on the other node
            a = rng.choice(actors)
            what = act(a)
            note(f"{a.base}@{a.node} ({a.nick}) {what} [burst]")
        # a pause of some steps: a round trip to a client's node (answered when that node has
        # read everything sent before), so actions interleave at several distances
        if rng.random() < 0.4:
            pacer = rng.choice([obs[n] for n in live])
            query(pacer, "PING :pace")
        if step % 10 == 0:
            for c in clients:
                c.drain()

    def kill_node(name):
        note(f"KILL node {name}")
        for a in actors:
            if a.node == name and a.c is not None:
                a.c.why = "local"  # its connection ends with the node: expected
        obs[name].why = "local"
        dead.extend([f"obs{name}"] + [a.nick for a in actors if a.node == name and a.nick])
        cluster.nodes[name].kill()
        live.remove(name)
        for a in actors:
            if a.node == name and a.c is not None:
                a.c.close()
                a.c = None
                note(f"{a.base} ({a.nick}) lost with node {name}")
                a.nick = None
                connect(a, rng.choice(live))

    def probe_nodes():
        import subprocess
        out = {}
        for n, node in cluster.nodes.items():
            pid = node.process.pid
            def ticks():
                f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
                return int(f[11]) + int(f[12])
            try:
                out[f"cpu ticks so far {n}"] = ticks()  # (py-spy's dump tells busy from idle)
                r = subprocess.run([str(Path(__file__).resolve().parents[1] / ".venv/bin/py-spy"), "dump", "--pid", str(pid)],
                                   capture_output=True, text=True, timeout=60)
                out[f"pyspy {n}"] = r.stdout[-6000:] + r.stderr[-500:]
            except Exception as e2:
                out[f"pyspy {n}"] = repr(e2)
        for n in live:
            try:
                query(obs[n], "PING :alive", 20)
                out[f"obs{n}"] = "answers"
            except Exception as e2:
                out[f"obs{n}"] = f"no answer {str(e2)[:200]}"
            try:
                t0 = time.monotonic()
                p = irc_connect(ports[n]["irc"], f"probe{n}{rng.randrange(1000)}", f"probe{n}")
                out[f"new irc on {n}"] = f"{p is not None} in {time.monotonic() - t0:.1f}s"
                if p is not None:
                    clients.append(p)
                    p.why = "local"
            except Exception as e2:
                out[f"new irc on {n}"] = f"failed {str(e2)[:200]}"
        return out

    def dump(kind, extra):
        (OUT / f"{MODE}_{seed}_{kind}.json").write_text(json.dumps({"log": log, "errors": node_errors(cluster),
            "extra": extra,
            "nodelog": {n: node.log for n, node in cluster.nodes.items()},
            "lines": {f"{i}:{c.name}": c.all for i, c in enumerate(clients)}}, indent=1))

    stage = "steps"
    try:
        run_steps(rng, actors, persist, observer_act, act, note, clients)
        stage = "settle"
        # settle: every IRC client answers a PING (its commands processed)
        for a in actors:
            if a.kind == "irc" and a.c and not a.c.closed:
                try:
                    query(a.c, "PING :x")
                except (TimeoutError, EOFError) as e:
                    note(f"settle {a.base}: {e!r}")
                    raise
        note("settled")
        if dead:  # compared once every live node reaped the killed one (its users gone)
            reaped = time.monotonic() + 40
            while time.monotonic() < reaped and any(
                    any(" 303 " in l and l.split(":", 2)[-1].strip() for l in query(obs[n], "ISON " + " ".join(dead)))
                    for n in live):
                pass
            note("reaped")
        stage = "snapshot"
        snaps = None
        deadline = time.monotonic() + 40
        rounds_ = 0
        while True:
            rounds_ += 1
            snaps = {n: snapshot(obs[n], f"obs{n}", POOL) for n in live}
            if alike(snaps):
                break
            if time.monotonic() > deadline:
                break
            # (each snapshot is a round of queries, each waiting for its answer)
    except Exception as e:
        note(f"DRIVER EXCEPTION at {stage}: {e!r}"[:3000])
        extra = probe_nodes()
        note(f"probes: {extra}")
        dump("crash", extra)
        raise
    same = alike(snaps)
    errs = node_errors(cluster)
    closed = [f"{c.name}: {c.why}" for c in clients if c.closed and c.why != "local"]
    report = {"seed": seed, "same": same, "rounds": rounds_, "errors": errs, "closed": closed,
              "log": log, "snaps": snaps}
    diff = {}
    if not same:
        for key in sorted(set().union(*snaps.values())):
            if len({json.dumps(snap.get(key), sort_keys=True) for snap in snaps.values()}) > 1:
                diff[key] = {n: snap.get(key) for n, snap in snaps.items()}
        report["diff"] = diff
    report["actor_lines"] = {a.base: (a.c.all[-60:] if a.c else []) for a in actors}
    if not same or errs or closed:
        report["all_lines"] = {f"{i}:{c.name}": c.all for i, c in enumerate(clients)}
    odd = []
    for c in clients:
        for l in c.all:
            if re.search(r"^ERROR| FAIL |Internal|unexpected|[Ee]rror", l) and "Closing Link" not in l:
                odd.append(f"{c.name}: {l}")
    report["odd"] = odd[:50]
    if not same or errs or closed:
        report["nodelog"] = {n: node.log for n, node in cluster.nodes.items()}
    if not same:
        report["events"] = numbered_events(postgres_dsn)
    (OUT / f"{MODE}_{seed}_{time.time():.0f}.json").write_text(json.dumps(report, indent=1))
    for c in clients:
        c.close()
    assert same and not errs and not closed, json.dumps({"diff": diff, "errors": errs, "closed": closed}, indent=1)[:4000]
