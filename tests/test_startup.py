"""``twistd -n chathub`` start-up as an operator sees it: no config at all (built-in defaults,
data under ./var), a UNIX-socket listener next to a TCP one for the same protocol, and a
corrupt or unusable database stopping the start with a message naming the file."""
from __future__ import annotations

import errno
import fcntl
import os
import shutil
import socket
import stat
import tempfile
import threading
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support import ANY_PORT, LineClient, TwistdServer, server_config

DEFAULT_PORTS = {"line": 2323, "irc": 6667, "http": 8080}
#: held while a test uses the fixed default ports, so two suites on one machine take turns
PORT_LOCK = Path(tempfile.gettempdir()) / "chathub-tests-default-ports.lock"


@contextmanager
def default_ports_lock(timeout: float = 120.0):
    """An exclusive lock on the default ports (another test run may hold them for a moment)."""
    with open(PORT_LOCK, "a+") as f:
        # flock has no timeout: block in a thread, wait for it with one
        locked = threading.Event()
        threading.Thread(target=lambda: (fcntl.flock(f, fcntl.LOCK_EX), locked.set()), daemon=True).start()
        if not locked.wait(timeout):
            pytest.fail(f"another test run held {PORT_LOCK} for {timeout} s")
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def busy_default_ports() -> dict[str, str]:
    """Default ports something else listens on (bound the way Twisted binds: SO_REUSEADDR)."""
    busy = {}
    for name, port in DEFAULT_PORTS.items():
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError as e:
                busy[name] = f"{port} ({errno.errorcode.get(e.errno, e.errno)})"
    return busy


def listening_addresses(port: int) -> set[str]:
    """Local IPv4/IPv6 addresses with a listening TCP socket on ``port`` (from /proc/net)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if int(hex_port, 16) != port or fields[3] != "0A":  # 0A: LISTEN
                continue
            if len(address) == 8:
                found.add(socket.inet_ntop(socket.AF_INET, bytes.fromhex(address)[::-1]))
            else:
                words = bytes.fromhex(address)
                raw = b"".join(words[i:i + 4][::-1] for i in range(0, 16, 4))
                found.add(socket.inet_ntop(socket.AF_INET6, raw))
    return found


def test_without_config_it_runs_on_the_builtin_defaults(tmp_path):
    with default_ports_lock():
        busy = busy_default_ports()
        if busy:
            pytest.fail(
                "cannot show the built-in defaults: these default ports are in use on this machine: "
                + ", ".join(f"{k} {v}" for k, v in busy.items())
                + " (stop whatever listens there and run the test again)"
            )
        server = TwistdServer(tmp_path / "cwd", None)
        try:
            server.start(wait_for=r"starting on (2323|6667|8080)$", count=3)
            for port in DEFAULT_PORTS.values():
                assert [l for l in server.log if l.endswith(f" starting on {port}")], f"no listener on {port}"
            # data under ./var of the working directory
            assert (tmp_path / "cwd" / "var" / "chathub.sqlite3").is_file()
            assert [l for l in server.log if str(tmp_path / "cwd" / "var" / "chathub.sqlite3") in l]
            # bound to loopback only (the kernel's table of listening sockets says so)
            for port in DEFAULT_PORTS.values():
                assert listening_addresses(port) == {"127.0.0.1"}, f"port {port}"
            # and every listener answers
            telnet = LineClient(DEFAULT_PORTS["line"])
            try:
                telnet.expect("Welcome")
                telnet.send("/nick deflt")
                telnet.expect(r"^\* you are deflt, a guest")
            finally:
                telnet.close()
            # password hashes and private messages: nobody else may read them
            var = tmp_path / "cwd" / "var"
            assert stat.S_IMODE(var.stat().st_mode) == 0o700
            for name in ("chathub.sqlite3", "chathub.sqlite3-wal", "chathub.sqlite3-shm"):
                assert stat.S_IMODE((var / name).stat().st_mode) == 0o600, name
            irc = LineClient(DEFAULT_PORTS["irc"])
            try:
                irc.send("NICK dirc")
                irc.send("USER d 0 * :d")
                irc.expect(r" 001 dirc ")
            finally:
                irc.close()
            with urllib.request.urlopen(f"http://127.0.0.1:{DEFAULT_PORTS['http']}/", timeout=10) as reply:
                assert reply.status == 200
            assert server.exceptions == []
        finally:
            server.stop()


def test_tcp_and_unix_listeners_for_one_protocol(tmp_path, twistd_server):
    # UNIX socket paths are limited to 108 bytes: pytest's tmp_path may be longer
    sockdir = tempfile.mkdtemp(prefix="chathub-", dir="/tmp")
    try:
        sock_path = os.path.join(sockdir, "line.sock")
        # the UNIX listener first: Twisted logs "starting on" for a UNIX port before binding
        # it, for a TCP port after, so the TCP line (the listeners start in order) means both are up
        config = server_config(tmp_path / "var", line=False).replace(
            "line = []", f'line = ["unix:{sock_path}", "{ANY_PORT}"]'
        )
        assert sock_path in config
        server = twistd_server(config, wait_for=r"LineFactory starting on \d+$")
        port = server.port("line")
        assert [l for l in server.log if "starting on" in l and sock_path in l]
        over_tcp, over_unix = LineClient(port), LineClient(unix_path=sock_path)
        try:
            for client, nick in ((over_tcp, "viatcp"), (over_unix, "viaunix")):
                client.expect("Welcome")
                client.send(f"/nick {nick}")
                client.expect(rf"^\* you are {nick}, ")
                client.send("/join #both")
                client.expect(r"^\* in #both ")
            over_tcp.expect(r"^\* viaunix joined #both$")
            over_unix.send("hello over a unix socket")
            over_tcp.expect(r"^\[#both\] <viaunix> hello over a unix socket$")
            over_tcp.send("hello over tcp")
            over_unix.expect(r"^\[#both\] <viatcp> hello over tcp$")
        finally:
            over_tcp.close()
            over_unix.close()
        assert server.exceptions == []
    finally:
        shutil.rmtree(sockdir, ignore_errors=True)


def _refused_start(tmp_path: Path, config: str, pattern: str) -> TwistdServer:
    """Start, expect the refusal line, and a non-zero exit without any listener."""
    server = TwistdServer(tmp_path / "server", config).refused(pattern)
    assert not [l for l in server.log if "starting on" in l], "a listener started"
    return server


@pytest.mark.parametrize(
    "damage, words",
    [
        ("garbage", "corrupt"),
        ("sqlite-header-then-zeros", "corrupt"),  # the magic string, then a ruined page
        ("a-directory", "is a directory"),
    ],
)
def test_corrupt_database_stops_startup_naming_the_file(tmp_path, damage, words):
    data = tmp_path / "var"
    data.mkdir()
    db = data / "chathub.sqlite3"
    if damage == "garbage":
        db.write_bytes(b"this is not an SQLite database\x00\xff" * 200)
    elif damage == "sqlite-header-then-zeros":
        db.write_bytes(b"SQLite format 3\x00" + bytes(4096))
    else:
        db.mkdir()
    before = db.read_bytes() if db.is_file() else None
    config = server_config(data)
    server = _refused_start(tmp_path, config, r"cannot start")
    (line,) = [l for l in server.log if "cannot start" in l]
    assert str(db) in line and words in line
    if before is not None:
        assert db.read_bytes() == before  # left alone for the operator


def test_unusable_data_dir_stops_startup_naming_it(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("a regular file, not a directory")
    data = afile / "sub"  # cannot be created, even as root
    config = server_config(data)
    server = _refused_start(tmp_path, config, r"cannot start")
    (line,) = [l for l in server.log if "cannot start" in l]
    assert str(data) in line and "Not a directory" in line


def test_data_open_to_others_is_made_private(tmp_path, twistd_server):
    """A data directory and database that an older chathub (or an operator's umask) left
    readable by others are tightened at start-up, with a warning saying so."""
    data = tmp_path / "var"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    db = data / "chathub.sqlite3"
    db.touch()
    db.chmod(0o644)
    server = twistd_server(server_config(data, line=False), wait_for=r"loaded; starting listeners")
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert [l for l in server.log if "was open to other users; it is now private (0700)" in l]
    assert [l for l in server.log if "was readable by other users; it is now private (0600)" in l]
