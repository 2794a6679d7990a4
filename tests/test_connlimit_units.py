"""Connection limits and the HTTP request deadline as units: ``ConnectionLimits`` on a
``task.Clock``, the HTTP channel on a ``StringTransport`` with time from a ``task.Clock``."""
from __future__ import annotations

import resource
import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from chathub.auth.portal import account_directory, build_portal
from chathub.config import Config, ConfigError
from chathub.config.core import LimitsConfig
from chathub.config.web import WebSocketConfig
from chathub.hub.service import ChatHub
from chathub.protocols.connlimit import TOO_FAST, TOO_MANY, ConnectionLimits, address_key
from chathub.protocols.web import build_site
from tests.support import REPO


# -- ConnectionLimits ----------------------------------------------------------------------


def test_cap_per_address_and_release():
    limits = ConnectionLimits(3, rate=1000.0, burst=1000, clock=Clock())
    assert [limits.admit("10.0.0.1") for _ in range(3)] == [None, None, None]
    assert limits.admit("10.0.0.1") == TOO_MANY
    assert limits.admit("10.0.0.2") is None  # another address has its own count
    # the refused one holds its socket until it closes, like the others
    assert limits.held["10.0.0.1"] == 4
    limits.release("10.0.0.1")
    limits.release("10.0.0.1")
    assert limits.admit("10.0.0.1") is None
    for _ in range(3):
        limits.release("10.0.0.1")
    limits.release("10.0.0.2")
    assert limits.held == {}  # nothing left behind for an address that has gone


def test_connect_rate_allows_a_burst_then_the_average():
    clock = Clock()
    limits = ConnectionLimits(100, rate=2.0, burst=5, clock=clock)
    assert [limits.admit("10.0.0.1") for _ in range(5)] == [None] * 5
    assert limits.admit("10.0.0.1") == TOO_FAST
    assert limits.admit("10.0.0.9") is None
    clock.advance(0.5)  # one more connection's worth at 2 per second
    assert limits.admit("10.0.0.1") is None
    assert limits.admit("10.0.0.1") == TOO_FAST
    clock.advance(60)
    assert [limits.admit("10.0.0.1") for _ in range(5)] == [None] * 5


def test_exempt_addresses_and_networks_are_never_counted():
    limits = ConnectionLimits(1, rate=0.001, burst=1, exempt=["127.0.0.0/8", "2001:db8::/32"], clock=Clock())
    for host in ("127.0.0.1", "127.9.9.9", "::ffff:127.0.0.1", "2001:db8::1", "2001:db8:1::7"):
        assert [limits.admit(host) for _ in range(5)] == [None] * 5
        limits.release(host)
    assert limits.held == {}
    assert limits.admit("192.0.2.1") is None
    assert limits.admit("192.0.2.1") == TOO_MANY


def test_ipv6_counts_per_64_and_mapped_ipv4_as_ipv4():
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::2")
    assert address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1")
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7" == address_key("192.0.2.7")
    assert address_key("fe80::1%eth0") == address_key("fe80::2")
    limits = ConnectionLimits(2, rate=1000.0, burst=1000, clock=Clock())
    assert limits.admit("2001:db8:1:2::1") is None
    assert limits.admit("2001:db8:1:2::ffff") is None
    assert limits.admit("2001:db8:1:2:1:2:3:4") == TOO_MANY  # same /64
    assert limits.admit("2001:db8:1:3::1") is None


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["admit", "release", "wait"]), st.integers(0, 40), st.floats(0, 5)),
        max_size=300,
    )
)
def test_counts_match_what_is_open_and_the_rate_table_stays_small(steps):
    """Whatever the order of connects, closes and time passing: the count per address is the
    number of its sockets still open (no entry when none), and the rate table never holds
    more than the addresses seen in the last burst interval (plus the sweep's slack)."""
    clock = Clock()
    limits = ConnectionLimits(5, rate=10.0, burst=3, clock=clock)
    open_sockets: dict[str, int] = {}
    for action, n, seconds in steps:
        host = f"10.0.{n // 256}.{n % 256}"
        if action == "admit":
            limits.admit(host)
            open_sockets[host] = open_sockets.get(host, 0) + 1
        elif action == "release" and open_sockets.get(host):
            limits.release(host)
            open_sockets[host] -= 1
            if not open_sockets[host]:
                del open_sockets[host]
        else:
            clock.advance(seconds)
        assert limits.held == open_sockets
        assert len(limits._next) <= max(1024, 2 * len(open_sockets)) + 1


def test_many_addresses_do_not_grow_the_rate_table_without_bound():
    clock = Clock()
    limits = ConnectionLimits(5, rate=10.0, burst=3, clock=clock)
    for i in range(50_000):
        host = f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}"
        limits.admit(host)
        limits.release(host)
        clock.advance(0.01)  # 100 new addresses a second; a record lasts 0.3 s
    assert limits.held == {}
    assert len(limits._next) <= 2 * 1024 + 1


def test_limits_settings_are_validated():
    assert Config().limits.max_connections_per_ip > 0
    for bad in (
        {"max_connections_per_ip": 0},
        {"connect_rate_per_ip": 0.0},
        {"connect_burst_per_ip": 0},
        {"http_request_timeout": 0.0},
        {"connection_limits_exempt": ["not an address"]},
    ):
        with pytest.raises(ConfigError):
            Config().with_overrides(limits=bad)


def test_raise_open_files_limit_raises_the_soft_limit_to_the_hard_one():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(256, hard)
    # in a child, so this process keeps its limits
    script = (
        "import resource\n"
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({low}, {hard}))\n"
        "from chathub.protocols.connlimit import raise_open_files_limit\n"
        "print(raise_open_files_limit(), resource.getrlimit(resource.RLIMIT_NOFILE))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True).stdout
    expected = hard if hard != resource.RLIM_INFINITY else int(open("/proc/sys/fs/nr_open").read())
    assert out.strip() == f"({low}, {expected}, {hard}) ({expected}, {hard})"


def _in_a_child(script: str) -> str:
    return subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout.strip()


_FDS = (
    "import os, resource\n"
    "def fdsize():\n"
    "    return int([l.split()[1] for l in open('/proc/self/status') if l.startswith('FDSize')][0])\n"
    "def open_fds():\n"
    "    return sorted(int(n) for n in os.listdir('/proc/self/fd'))\n"
    "from chathub.protocols.connlimit import reserve_descriptor_table\n"
)


def test_the_descriptor_table_is_made_at_start_up_for_the_connections_to_come():
    # the kernel doubles the table as descriptors open, waiting for an RCU grace period each
    # time in a process with threads: made once at start-up, a burst of connections never waits
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(4096, hard)
    script = _FDS + (
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({wanted}, {hard}))\n"
        "before, fds = fdsize(), open_fds()\n"
        "print(before, reserve_descriptor_table(100_000), fdsize(), open_fds() == fds)\n"
    )
    before, made, after, same = _in_a_child(script).split()
    assert int(before) < wanted  # a fresh process starts small (256 on Linux)
    assert int(made) == wanted  # no more than the open files limit allows
    assert int(after) >= wanted and same == "True"  # and no descriptor left open


def test_making_the_descriptor_table_leaves_a_descriptor_in_use_alone():
    script = _FDS + (
        "path = os.path.realpath(__import__('sys').executable)\n"
        "kept = os.open(path, os.O_RDONLY)\n"
        "os.dup2(kept, 999)  # in use right where the table would be made to reach\n"
        "reserve_descriptor_table(1000)\n"
        "print(os.path.samestat(os.fstat(999), os.stat(path)), fdsize() >= 1000)\n"
    )
    assert _in_a_child(script) == "True True"


# -- the HTTP request deadline -------------------------------------------------------------


def _channel(clock: Clock, request_timeout: float = 10.0, handshake_timeout: float = 10.0):
    config = Config(
        limits=LimitsConfig(http_request_timeout=request_timeout),
        websocket=WebSocketConfig(open_handshake_timeout=handshake_timeout),
    )
    hub = ChatHub(config, accounts=account_directory([]), clock=clock)
    site = build_site(hub, build_portal(hub, config, []), config, clock=clock)
    channel = site.buildProtocol(IPv4Address("TCP", "192.0.2.1", 4321))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.1", 4321))
    channel.makeConnection(transport)
    return channel, transport


def test_trickled_request_head_ends_at_the_deadline_whatever_arrives():
    clock = Clock()
    channel, transport = _channel(clock, request_timeout=10.0)
    head = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 100
    for i in range(9):
        channel.dataReceived(head[i : i + 1])  # a byte a second: an idle timer never fires
        clock.advance(1)
        assert not transport.disconnecting
    channel.dataReceived(head[9:10])
    clock.advance(1)
    assert transport.disconnecting
    assert transport.value().startswith(b"HTTP/1.1 408 Request Timeout\r\n")


def test_silent_connection_ends_at_the_deadline_without_a_word():
    clock = Clock()
    channel, transport = _channel(clock, request_timeout=5.0)
    clock.advance(4.9)
    assert not transport.disconnecting
    clock.advance(0.2)
    assert transport.disconnecting and transport.value() == b""


def test_websocket_request_ends_at_the_opening_handshake_timeout():
    clock = Clock()
    channel, transport = _channel(clock, request_timeout=30.0, handshake_timeout=3.0)
    clock.advance(1)
    channel.dataReceived(b"GET /ws HTTP/1.1\r\n")
    channel.dataReceived(b"Host: localhost\r\n")
    clock.advance(1.9)  # 2.9 s since the connection was made
    assert not transport.disconnecting
    clock.advance(0.2)
    assert transport.disconnecting
    assert transport.value().startswith(b"HTTP/1.1 408 ")


def test_kept_alive_connection_gets_a_fresh_deadline_per_request():
    clock = Clock()
    channel, transport = _channel(clock, request_timeout=5.0)
    clock.advance(4)
    channel.dataReceived(b"GET /nothing-here HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 404 ")
    assert b"\r\nserver:" not in transport.value().lower()
    transport.clear()
    clock.advance(4)  # 8 s since the connection, 4 since the response
    assert not transport.disconnecting
    channel.dataReceived(b"GET / HTTP/1.1\r\n")
    clock.advance(1.1)
    assert transport.disconnecting
    assert transport.value().startswith(b"HTTP/1.1 408 ")
