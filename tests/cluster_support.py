"""What the tests of several ``twistd chathub`` nodes share (tests/test_cluster_nodes.py,
tests/test_cluster_presence.py): nodes in cluster mode on one PostgreSQL database and one
redis-server (both real; the test session starts Redis on a free port), and users of each
protocol on them.

A test module takes the fixture by importing it: ``from tests.cluster_support import
cluster``, beside ``postgres_database`` and ``postgres_dsn`` from tests/store_fixtures.py.
"""
from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from tests.store_fixtures import postgres_database, postgres_dsn  # noqa: F401 (fixtures)
from tests.support import LineClient, server_config

ROOM = "#x"


def node_config(tmp_path, name: str, dsn: str, redis_url: str, prefix: str, more: str = "") -> str:
    """A node's config file; ``more``: further TOML (whole tables) appended to it."""
    extra = (
        f'[storage]\nbackend = "postgres"\npostgres_dsn = "{dsn}"\n'
        f'[cluster]\nenabled = true\nredis_url = "{redis_url}"\nnode_id = "{name}"\nkey_prefix = "{prefix}"\n'
        "lease = 4.0\nheartbeat = 1.0\ncheck_interval = 0.5\nresync_interval = 0.5\n"
        "[limits]\nflood_exempt = [\"127.0.0.1\"]\nconnection_limits_exempt = [\"127.0.0.1\"]\n"
        "[history]\nquery_limit = 2000\n" + more
    )
    return server_config(tmp_path / name, extra, irc=True, http=True)


@pytest.fixture
def cluster(tmp_path, postgres_dsn, redis_server, twistd_server):  # noqa: F811 (fixture)
    """Start nodes on one database and one Redis: ``start(name) -> (line_port, irc_port)``
    (``twistd_server`` last: its nodes stop before the schema they use is dropped)."""
    prefix = "t" + uuid.uuid4().hex[:8]
    clients: list[LineClient] = []

    def start(name: str, redis_url: str = "", dsn: str = "", more: str = "") -> tuple[int, int]:
        config = node_config(tmp_path, name, dsn or postgres_dsn, redis_url or redis_server.url, prefix, more)
        node = start.nodes[name] = twistd_server(config)
        start.http[name] = node.port("http")
        return node.port("line"), node.port("irc")

    def connect(port: int) -> LineClient:
        client = LineClient(port, timeout=20.0)
        clients.append(client)
        return client

    start.connect = connect
    start.nodes = {}
    start.prefix = prefix  # of the nodes' Redis keys: ``{prefix}:node:{id}`` (chathub/cluster/scripts.py)
    start.redis = redis_server
    start.http = {}
    yield start
    for client in clients:
        client.close()


#: where Debian's PostgreSQL 15 keeps initdb and pg_ctl
POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")


class OwnPostgres:
    """A PostgreSQL cluster of one test, in a temporary directory on a free port, for tests
    that stop and start it (never the shared one on 5432). initdb refuses to run as root,
    so it and pg_ctl run as the ``postgres`` OS user; ``pg_ctl -w`` waits for the server to
    accept connections (or to be gone) itself."""

    def __init__(self) -> None:
        self.user = pwd.getpwnam("postgres")
        self.dir = Path(tempfile.mkdtemp(prefix="chathub-pg-"))
        os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)  # the postgres user's, not root's
        self.data = self.dir / "data"
        with socket.socket() as s:  # PostgreSQL is given a port, not port 0
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def _run(self, program: str, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(POSTGRES_BIN / program), *args],
            check=True, capture_output=True, timeout=120, cwd=self.dir,
        )

    def start(self) -> "OwnPostgres":
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"), "-w", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        """``immediate`` is a crash: no shutdown checkpoint, open connections cut."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", str(POSTGRES_BIN / "pg_ctl"), "-D", str(self.data),
                        "-m", "immediate", "-w", "stop"], capture_output=True, timeout=120)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def own_postgres():
    """A PostgreSQL of this test alone (``OwnPostgres``), running; request it before
    ``cluster`` so the nodes stop before it does."""
    server = OwnPostgres().start()
    yield server
    server.remove()


def telnet_user(cluster, port: int, nick: str) -> LineClient:
    user = cluster.connect(port)
    user.send(f"/nick {nick}\r\n")
    user.expect(rf"{nick}")
    user.send(f"/join {ROOM}\r\n")
    user.expect(rf"{ROOM}")
    user.say = lambda text: user.send(f"{text}\r\n")
    return user


def irc_user(cluster, port: int, nick: str, caps: str = "", join: bool = True, once_listed: bool = False) -> LineClient:
    """An IRC user of ``port`` signed on as ``nick`` (with ``caps``), in the room if ``join``;
    with ``once_listed`` it joins only once its node lists the room (it heard of the room's
    first join on another node), so it joins the room that exists rather than founding one."""
    user = cluster.connect(port)
    if caps:
        user.send(f"CAP REQ :{caps}\r\n")
    user.send(f"NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n")
    if caps:
        user.expect(r" ACK ")
        user.send("CAP END\r\n")
    user.expect(r" 001 ")
    if join:
        if once_listed:
            until_listed(user, nick, ROOM)
        user.send(f"JOIN {ROOM}\r\n")
        user.expect(rf" 366 {nick} {ROOM} ")
    user.say = lambda text: user.send(f"PRIVMSG {ROOM} :{text}\r\n")
    return user


def meet(sender, watchers) -> None:
    """Ping the room from ``sender``'s node until each of ``watchers`` (on the other node)
    has seen a ping. A node starts delivering a conversation at the first number it hears
    of it (docs/cluster.md): from here on, the watchers' node has heard of the room past
    its own users' joins, so whatever the sender's node writes next reaches them."""
    for attempt in range(100):
        sender.say(f"ping{attempt}")
        try:
            for watcher in watchers:
                watcher.expect(r"ping\d+", timeout=0.2)
            return
        except TimeoutError:
            continue
    raise AssertionError("no ping crossed the nodes")


def registration(cluster, port: int, nick: str) -> LineClient:
    """An IRC connection that has sent NICK and USER (its answer not read yet)."""
    client = cluster.connect(port)
    client.send(f"NICK {nick}\r\nUSER u 0 * :u\r\n")
    return client


def two_talking(cluster, redis_url: str) -> tuple[LineClient, LineClient]:
    """alice on node a and bob on node b (both on Redis ``redis_url``), in the room, each
    node past the other's joins (``meet``)."""
    a_line, a_irc = cluster("a", redis_url=redis_url)
    b_line, b_irc = cluster("b", redis_url=redis_url)
    alice = irc_user(cluster, a_irc, "alice")
    bob = irc_user(cluster, b_irc, "bob")
    meet(bob, [alice])
    meet(alice, [bob])
    return alice, bob


def all_arrive(receiver: LineClient, count: int) -> None:
    """``receiver`` gets m0 .. m{count-1} of the room: every one, once, in order."""
    got: list[str] = []
    while not got or got[-1] != f"m{count - 1}":  # the last one comes last
        got.append(receiver.expect(r"PRIVMSG #x :m\d+$", timeout=30).rsplit(":", 1)[1])
    assert got == [f"m{i}" for i in range(count)]


def until_answer(client: LineClient) -> str:
    """The client's answer to its registration: 001 or the refusal."""
    return client.expect(r" (001|433|437) ").split(" ")[1]


def until_listed(client: LineClient, nick: str, room: str = "#r") -> None:
    """Until ``client``'s node lists ``room`` (it heard of the room's first join)."""
    until(client, f"LIST {room}", rf" 323 {nick} ", rf" 322 {nick} {room} ")


def until_names(client: LineClient, nick: str, expected: set, within: float = 20.0) -> bool:
    """Until NAMES at ``client``'s node lists ``expected`` (another node's joins are
    applied a moment after they commit, and a join is answered before its commit)."""
    names: set = set()
    for _ in rounds(f"NAMES at {nick}'s node listing {expected} (last: {names})", within):
        reply = answer(client, f"NAMES {ROOM}", rf" 366 {nick} ")
        listed = [line.split(f" {ROOM} ", 1)[1] for line in reply if f" 353 {nick} " in line]
        names.clear()
        names.update(n for part in listed for n in part.lstrip(":").split())
        if names == expected:
            return True
    return False


def rounds(what: str, seconds: float = 20.0):
    """Yield until ``seconds`` have passed, then fail saying ``what`` never happened: for
    loops whose every round waits on the server's answer (a state another node applies a
    little after its commit), bounded by time rather than by a count that a busy machine
    runs through too fast."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        yield
    raise AssertionError(f"no {what} within {seconds:g} s")


def answer(client: LineClient, command: str, end: str) -> list[str]:
    """Send ``command`` and return the lines of its answer up to the one matching ``end``."""
    client.send(f"{command}\r\n")
    lines = []
    while True:
        line = client.readline()
        lines.append(line)
        if _matches(end, line):
            return lines


def until(client: LineClient, command: str, end: str, wanted: str, within: float = 20.0) -> list[str]:
    """``answer`` until one of its lines matches ``wanted`` (or fail after ``within``
    seconds): what one node did reaches the other a moment after it was answered, longer
    on a busy machine."""
    for _ in rounds(f"answer to {command!r} matching {wanted!r}", within):
        lines = answer(client, command, end)
        if any(_matches(wanted, line) for line in lines):
            return lines
    raise AssertionError("unreachable: rounds ends by raising")


def first(lines: list[str], numeric: str) -> str:
    """The first of ``lines`` that is the reply ``numeric``."""
    return next(line for line in lines if line.split(" ")[1:2] == [numeric])


def _matches(pattern: str, line: str) -> bool:
    return re.search(pattern, line) is not None
