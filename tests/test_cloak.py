"""Host cloaking (issue 10 item 14): nobody learns where another user connects from.

Units: the cloak is a keyed hash (the same address always gives the same cloak, another
secret another one, labels shared by a /24 or /64), the secret file (made 0600, reused, never
logged), the [privacy] settings.

Real sockets: one hub with IRC (IPv4 and IPv6), telnet and WebSocket (chathub.v1 and IRC)
listeners. Victims connect from 127.0.0.2 over every protocol; observers on every protocol
connect from 127.0.0.1 and look at them every way their protocol allows, and never receive
"127.0.0.2". An IRC operator and the victim themself do; bans by cloak work, on the hub's
rules for every protocol.
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
import stat

import pytest
import pytest_twisted
from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.logger import formatEvent, globalLogPublisher

from chathub.auth.cloak import (
    CloakSecretError,
    HostCloak,
    build_cloak,
    canonical_address,
    load_secret,
    open_cloak,
    parse_address,
)
from chathub.config import Config, ConfigError, parse_config
from tests.browser_helpers import connect
from tests.support import OPER_HASH, OPER_PASSWORD, HubServer, IrcClient, LineClient, register_irc, server_config

VICTIM = "127.0.0.2"  # whose address must stay hidden
NEIGHBOUR = "127.0.0.3"  # the same /24 as the victim
OUTSIDER = "127.0.1.5"  # another /24 of the same /16
CLOAK = re.compile(r"^[0-9a-f]{8}\.[0-9a-f]{8}\.[0-9a-f]{8}\.cloak$")
SECRET = b"k" * 32


# -- the cloak --------------------------------------------------------------------------------


def test_one_address_one_cloak_and_another_secret_another_cloak():
    cloak = HostCloak(SECRET)
    first = cloak.host_for("203.0.113.7")
    assert CLOAK.match(first)
    assert cloak.host_for("203.0.113.7") == first == HostCloak(SECRET).host_for("203.0.113.7")
    assert HostCloak(b"q" * 32).host_for("203.0.113.7") != first
    assert cloak.host_for("203.0.113.8") != first
    # an IPv4 client of a dual-stack listener arrives as ::ffff:a.b.c.d: the same user, the same cloak
    assert cloak.host_for("::ffff:203.0.113.7") == first
    assert HostCloak(SECRET, suffix="users.example.org").host_for("203.0.113.7").endswith(".users.example.org")


def test_labels_are_the_address_its_network_and_its_wider_network():
    cloak = HostCloak(SECRET)

    def labels(address):
        return cloak.host_for(address).split(".")[:3]

    a, same24, same16, other = labels("198.51.100.7"), labels("198.51.100.200"), labels("198.51.7.7"), labels("192.0.2.7")
    assert a[0] != same24[0] and a[1:] == same24[1:]
    assert a[1] != same16[1] and a[2] == same16[2]
    assert not set(a) & set(other)
    # IPv6: a /64 (one household, or one user's rotating privacy addresses) shares the 2nd label
    v6, same64, same48 = labels("2001:db8:1:2::1"), labels("2001:db8:1:2:aaaa::9"), labels("2001:db8:1:3::1")
    assert v6[0] != same64[0] and v6[1:] == same64[1:]
    assert v6[1] != same48[1] and v6[2] == same48[2]
    # a /32 label never equals the /24 label of an address ending in .0 (the kind is hashed too)
    net = labels("198.51.100.0")
    assert net[0] != net[1]


def test_what_is_no_ip_address_gets_one_label_and_an_empty_address_no_host():
    cloak = HostCloak(SECRET)
    assert re.match(r"^[0-9a-f]{8}\.cloak$", cloak.host_for("localhost"))
    assert cloak.host_for("") == ""


def test_with_cloaking_off_the_address_is_the_host_and_never_starts_with_a_colon():
    off = HostCloak(SECRET, enabled=False)
    assert off.host_for("203.0.113.7") == "203.0.113.7"
    assert off.host_for("::1") == "0::1"  # ":" would start IRC's trailing parameter
    assert canonical_address("0::1") == "::1" and canonical_address("::ffff:10.0.0.1") == "10.0.0.1"
    assert canonical_address("UNIXAddress(None)") == "UNIXAddress(None)"


def test_the_secret_is_in_no_repr():
    cloak = HostCloak(b"a-very-secret-key-123")
    assert "secret" not in repr(cloak) and "a-very" not in repr(cloak)


ipv4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
ipv6 = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)


@settings(max_examples=300, deadline=None)
@given(st.one_of(ipv4, ipv6), st.binary(min_size=16, max_size=64), st.binary(min_size=16, max_size=64))
@example(ipaddress.IPv6Address("::ffff:0:0"), bytes(16), bytes(16))  # IPv4-mapped: found by CI
def test_any_address_gets_a_stable_cloak_that_does_not_contain_it(ip, secret, other_secret):
    address = str(ip)
    cloak = HostCloak(secret)
    host = cloak.host_for(address)
    assert CLOAK.match(host), host
    assert host == HostCloak(secret).host_for(address)
    if other_secret != secret:
        assert HostCloak(other_secret).host_for(address) != host
    assert address not in host
    # the users of one /24 (IPv4) or /64 (IPv6) share the last two labels; an IPv4-mapped IPv6
    # address (::ffff:a.b.c.d) is cloaked as the IPv4 address it maps, so its network is a /24
    seen_as = parse_address(address)
    width = 24 if seen_as.version == 4 else 64
    neighbour = ipaddress.ip_network(f"{seen_as}/{width}", strict=False)[-1]
    assert cloak.host_for(str(neighbour)).split(".")[1:] == host.split(".")[1:]


# -- the secret -------------------------------------------------------------------------------


class LogLines:
    """Every log event text published while it is open."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, event) -> None:
        self.lines.append((formatEvent(event) or "") + repr(event))

    def __enter__(self) -> "LogLines":
        globalLogPublisher.addObserver(self)
        return self

    def __exit__(self, *exc) -> None:
        globalLogPublisher.removeObserver(self)


def test_the_secret_file_is_made_0600_whatever_the_umask_and_reused(tmp_path):
    path = str(tmp_path / "cloak.key")
    old = os.umask(0)  # the most permissive: the file must still be private
    try:
        with LogLines() as log:
            secret = load_secret(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(secret) == 64 and re.fullmatch(rb"[0-9a-f]{64}", secret)
    assert load_secret(path) == secret  # the next start reads the same one
    assert not any(secret.decode() in line for line in log.lines)
    assert any("made a new cloak secret" in line for line in log.lines)


def test_a_readable_secret_file_is_tightened_with_a_warning_and_a_short_one_refused(tmp_path):
    path = tmp_path / "cloak.key"
    path.write_text("an operator's own secret\n")
    path.chmod(0o644)
    with LogLines() as log:
        assert load_secret(str(path)) == b"an operator's own secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert any("was readable by other users" in line and "0600" in line for line in log.lines)
    assert not any("an operator's own secret" in line for line in log.lines)
    path.write_text("short\n")
    with pytest.raises(CloakSecretError, match="fewer than 16 characters"):
        load_secret(str(path))
    # an empty file (a start that died while writing it) gets a secret
    path.write_text("")
    assert len(load_secret(str(path))) == 64
    with pytest.raises(CloakSecretError, match="cannot read or make the cloak secret file"):
        load_secret(str(tmp_path / "no-such-dir" / "cloak.key"))


def test_open_cloak_reads_no_file_when_the_secret_is_set_or_cloaking_is_off(tmp_path):
    secret = "sixteen-chars-or-more"
    config = Config().with_overrides(server={"data_dir": str(tmp_path)}, privacy={"cloak_secret": secret})
    assert open_cloak(config).host_for("192.0.2.1") == HostCloak(secret.encode()).host_for("192.0.2.1")
    off = Config().with_overrides(server={"data_dir": str(tmp_path)}, privacy={"cloak_hosts": False})
    assert open_cloak(off).host_for("192.0.2.1") == "192.0.2.1"
    assert os.listdir(tmp_path) == []
    made = open_cloak(Config().with_overrides(server={"data_dir": str(tmp_path)}))
    assert os.listdir(tmp_path) == ["cloak.key"]
    assert made.host_for("192.0.2.1") == HostCloak(load_secret(str(tmp_path / "cloak.key"))).host_for("192.0.2.1")
    # without a kept secret (tests, embedding) every build has its own key
    assert build_cloak(Config().privacy).host_for("192.0.2.1") != build_cloak(Config().privacy).host_for("192.0.2.1")


def test_privacy_settings_are_checked_and_a_bad_secret_is_not_echoed():
    assert parse_config('[privacy]\ncloak_suffix = "users.example.org"\n').privacy.cloak_suffix == "users.example.org"
    for bad in ("", "has space", "a..b", ".lead", "x" * 64, "under_score"):
        with pytest.raises(ConfigError, match=r"privacy\.cloak_suffix"):
            parse_config(f'[privacy]\ncloak_suffix = "{bad}"\n')
    with pytest.raises(ConfigError, match=r"privacy\.cloak_secret") as refused:
        parse_config('[privacy]\ncloak_secret = "tooShortPw"\n')
    assert "tooShortPw" not in str(refused.value)
    with pytest.raises(ConfigError, match=r"privacy\.cloak_secret_file"):
        parse_config('[privacy]\ncloak_secret_file = ""\n')


# -- every protocol, on real sockets ----------------------------------------------------------


@pytest_twisted.async_yield_fixture
async def servers():
    """One hub with every protocol (``HubServer``), and IRC on ::1 as well."""
    config = Config().with_overrides(
        server={"name": "irc.test"},
        websocket={"ping_interval": 0},
        irc={
            "flood_exempt": ["127.0.0.0/8", "::1"],
            # the hostmask names the real address: it must match although the host shown is a cloak
            "operators": [{"name": "boss", "password_hash": OPER_HASH, "hostmask": "*!*@127.0.0.1"}],
        },
    )
    s = HubServer(config)
    s.cloak = s.portal.realm.cloak
    s.irc6_port = s.listen("irc", r"tcp6:0:interface=\:\:1")
    yield s
    await s.stop()


def ws_texts(client) -> list[str]:
    """Everything a WebSocket client received, as text."""
    return [item if isinstance(item, str) else json.dumps(item) for item in client.received]


@pytest_twisted.ensureDeferred
async def test_no_protocol_shows_anyone_else_the_address(servers):
    s = servers
    hidden = s.cloak.host_for(VICTIM)
    caps = ("extended-join", "userhost-in-names", "chghost", "away-notify", "account-notify",
            "multi-prefix", "extended-monitor", "setname")
    watcher = await s.irc("watcher", *caps, rooms=["#room"])
    watcher.send("MONITOR + vi,vt,vw,vx")
    await watcher.roundtrip()
    telnet_watcher = await s.telnet("tw", rooms=["#room"])
    web_watcher = await s.ws("ww", rooms=["#room"])

    # the victims, from 127.0.0.2 on each protocol, join and talk
    vi = await s.irc("vi", source=VICTIM, rooms=["#room"])
    vt = await s.telnet("vt", source=VICTIM, rooms=["#room"])
    vw = await s.ws("vw", source=VICTIM, rooms=["#room"])
    vx = await connect(s.http_port, protocols=["text.ircv3.net"], json_messages=False, source=VICTIM)
    vx.send_text("NICK vx")
    vx.send_text("USER u 0 * :over WebSocket")
    await vx.expect(" 001 ")
    vx.send_text("JOIN #room")
    await vx.expect(" 366 ")
    vi.send("PRIVMSG #room :from irc", "AWAY :gone")
    vt.send("/msg #room from telnet")
    vw.send_json({"type": "message", "target": "#room", "text": "from web"})
    vx.send_text("PRIVMSG #room :from irc over ws")
    # four connections: the server reads them in whatever order they arrive
    for text in ("from irc", "from telnet", "from web", "from irc over ws"):
        await watcher.expect_count(rf"PRIVMSG #room :{re.escape(text)}$")
        await web_watcher.expect({"type": "message", "text": text})

    # every way IRC has to look at a user
    for nick in ("vi", "vt", "vw", "vx"):
        lines = await watcher.roundtrip(f"WHOIS {nick}")
        (whois,) = [l for l in lines if l.command == "311"]
        assert whois.params[3] == hidden
        assert not [l for l in lines if l.command in ("338", "378")]
    lines = await watcher.roundtrip("WHO #room")
    assert {l.params[3] for l in lines if l.command == "352" and l.params[5] != "watcher"} >= {hidden}
    lines = await watcher.roundtrip("WHO #room %tcuihsnfdlaor,7")
    # fields t c u i h s n ...: the IP field is a placeholder, the host the cloak
    whox = [l for l in lines if l.command == "354" and l.params[7] in ("vi", "vt", "vw", "vx")]
    assert len(whox) == 4 and {l.params[4] for l in whox} == {"255.255.255.255"}
    assert {l.params[5] for l in whox} == {hidden}
    # a WHO mask guessing the address finds nobody (else WHO would be an address oracle)
    lines = await watcher.roundtrip("WHO *127.0.0.2*")
    assert not [l for l in lines if l.command == "352"]
    lines = await watcher.roundtrip("USERHOST vi vt vw vx")
    assert all(reply.endswith("@" + hidden) for reply in lines[0].params[-1].split())
    lines = await watcher.roundtrip("NAMES #room")
    assert f"vi!~u@{hidden}" in " ".join(l.params[-1] for l in lines if l.command == "353")
    telnet_watcher.send("/who #room")
    await telnet_watcher.expect_re(r"^\*   .*vx ")
    web_watcher.send_json({"type": "members", "room": "#room", "ref": 9})
    await web_watcher.expect({"type": "room", "ref": 9})

    # CHGHOST: a host the hub sets is what everyone sees, and the address stays the operators'
    s.hub.set_host(s.hub.find_user("vi"), "~u", "vhost.example")
    chghost = await watcher.expect("CHGHOST")
    assert chghost.params == ["~u", "vhost.example"]
    assert s.hub.find_user("vi").ip == VICTIM

    # they leave: WHOWAS remembers the cloak
    vt.send("/quit")
    await vt.closed
    vi.send("QUIT :bye")
    await vi.closed
    lines = await watcher.roundtrip("WHOWAS vt")
    assert only_one(lines, "314").params[3] == hidden

    joins = [l for l in watcher.lines if l.command == "JOIN" and l.source.startswith(("vi!", "vt!", "vw!", "vx!"))]
    assert len(joins) == 4 and all(l.source.endswith("@" + hidden) for l in joins)
    assert [l for l in watcher.lines if l.command == "730"]  # MONITOR said they came (with the mask)
    for name, texts in (("IRC", watcher.texts), ("telnet", telnet_watcher.texts), ("chathub.v1", ws_texts(web_watcher))):
        leaks = [t for t in texts if VICTIM in t and " 315 watcher *127.0.0.2* " not in t]  # but our own probe
        assert not leaks, f"{name} watcher saw the address: {leaks}"
    # chathub.v1 objects carry no host at all
    assert not [t for t in ws_texts(web_watcher) if '"host"' in t]


def only_one(lines, command):
    found = [l for l in lines if l.command == command]
    assert len(found) == 1, [l.text for l in lines]
    return found[0]


@pytest_twisted.ensureDeferred
async def test_an_operator_and_the_user_themself_see_the_address(servers):
    s = servers
    vi = await s.irc("vi", source=VICTIM)
    plain = await s.irc("plain")
    boss = await s.irc("boss")
    boss.send(f"OPER boss {OPER_PASSWORD}")
    await boss.expect("381")

    lines = await boss.roundtrip("WHOIS vi")
    assert only_one(lines, "311").params[3] == s.cloak.host_for(VICTIM)
    assert only_one(lines, "378").params == ["boss", "vi", f"is connecting from *@{VICTIM} {VICTIM}"]
    assert only_one(lines, "338").params[1:4] == ["vi", f"~u@{VICTIM}", VICTIM]
    lines = await boss.roundtrip("WHO vi %tnhi,3")
    assert only_one(lines, "354").params[1:] == ["3", VICTIM, s.cloak.host_for(VICTIM), "vi"]
    lines = await boss.roundtrip("WHO *127.0.0.2*")
    assert only_one(lines, "352").params[5] == "vi"
    lines = await boss.roundtrip("USERHOST vi")
    assert lines[0].params[-1] == f"vi=+~u@{VICTIM}"

    # the user themself: told their cloak at the welcome, and their own address on asking
    assert [l.params[1] for l in vi.lines if l.command == "396"] == [s.cloak.host_for(VICTIM)]
    lines = await vi.roundtrip("WHOIS vi")
    assert only_one(lines, "338").params[3] == VICTIM
    lines = await vi.roundtrip("USERHOST vi")
    assert lines[0].params[-1] == f"vi=+~u@{VICTIM}"

    # anyone else: not a trace
    lines = await plain.roundtrip("WHOIS vi")
    assert not [l for l in lines if l.command in ("338", "378")]
    assert not [t for t in plain.texts if VICTIM in t]

    # IPv6: the address is sent so that IRC parses it ("0::1"), the cloak everywhere else
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP6ClientEndpoint, connectProtocol

    six = IrcClient()
    await connectProtocol(TCP6ClientEndpoint(reactor, "::1", s.irc6_port), six)
    s.clients.append(six)
    await register_irc(six, "six", username="u")
    lines = await boss.roundtrip("WHOIS six")
    assert only_one(lines, "311").params[3] == s.cloak.host_for("::1")
    assert only_one(lines, "338").params[1:4] == ["six", "~u@0::1", "0::1"]
    lines = await plain.roundtrip("WHOIS six")
    assert not [l for l in lines if l.command in ("338", "378")]


async def refused(client, text: str) -> bool:
    """Whether the IRC ``client``'s PRIVMSG to #b is refused (404)."""
    lines = await client.roundtrip(f"PRIVMSG #b :{text}")
    return any(l.command == "404" for l in lines)


async def heard(client, text: str) -> None:
    """Wait until the IRC ``client`` gets ``text`` in #b."""
    await client.expect(lambda l: l.command == "PRIVMSG" and l.params == ["#b", text])


@pytest_twisted.ensureDeferred
async def test_bans_match_the_cloak_never_the_hidden_address(servers):
    s = servers
    op = await s.irc("chanop", rooms=["#b"])
    victim = await s.irc("victim", source=VICTIM, rooms=["#b"])
    neighbour = await s.telnet("neighbour", source=NEIGHBOUR, rooms=["#b"])
    outsider = await s.irc("outsider", source=OUTSIDER, rooms=["#b"])
    bystander = await s.irc("bystander", rooms=["#b"])  # 127.0.0.1, an honest user watching

    # a ban on the real address matches nobody: bans must not tell a channel operator addresses
    await op.roundtrip(f"MODE #b +b *!*@{VICTIM}")
    assert not await refused(victim, "address ban")
    await heard(bystander, "address ban")
    await op.roundtrip(f"MODE #b -b *!*@{VICTIM}")

    # a ban on the victim's cloak: the victim only
    await op.roundtrip(f"MODE #b +b *!*@{s.cloak.host_for(VICTIM)}")
    assert await refused(victim, "cloak ban")
    neighbour.send("/msg #b the neighbour still talks")
    await heard(bystander, "the neighbour still talks")
    victim.send("PART #b")
    await victim.expect("PART")
    lines = await victim.roundtrip("JOIN #b")
    assert only_one(lines, "474")

    # the /24 by its last labels: the victim's neighbour too (telnet, the hub's same rule), not another /24
    labels = "." + s.cloak.host_for(VICTIM).split(".", 1)[1]
    network = "*!*@*" + labels
    assert s.cloak.host_for(NEIGHBOUR).endswith(labels) and not s.cloak.host_for(OUTSIDER).endswith(labels)
    await op.roundtrip(f"MODE #b +b {network}")
    neighbour.send("/msg #b banned now?")
    await neighbour.expect_re(r"^! .*#b")
    assert not await refused(outsider, "another network")
    await heard(bystander, "another network")
    assert not [l for l in bystander.lines if l.params[-1:] == ["banned now?"]]


@pytest_twisted.ensureDeferred
async def test_an_operators_hostmask_matches_the_real_address(servers):
    s = servers
    remote = await s.irc("remote", source=VICTIM)
    remote.send(f"OPER boss {OPER_PASSWORD}")
    assert (await remote.expect(lambda l: l.command in ("381", "491", "464"))).command == "491"
    local = await s.irc("local")
    local.send(f"OPER boss {OPER_PASSWORD}")
    await local.expect("381")


# -- the server keeps its secret --------------------------------------------------------------


def whois_host(irc_port: int, nick: str) -> str:
    """Connect from 127.0.0.2 as ``nick``, and from 127.0.0.1 ask WHOIS for it; its host."""
    victim = LineClient(irc_port, source=VICTIM)
    victim.send(f"NICK {nick}")
    victim.send("USER u 0 * :R")
    victim.expect(r" 001 ")
    asker = LineClient(irc_port)
    asker.send("NICK asker")
    asker.send("USER u 0 * :R")
    asker.expect(r" 001 ")
    asker.send(f"WHOIS {nick}")
    host = asker.expect(r" 311 ").split()[5]
    for client in (victim, asker):
        client.send("QUIT")
        client.expect_closed()
    return host


def test_the_server_keeps_its_secret_across_restarts_and_never_logs_it(tmp_path, twistd_server):
    data = tmp_path / "var"
    # the sign-on line (with the cloak shown) is a debug-level one
    config = server_config(data, '[irc]\nflood_exempt = ["127.0.0.0/8"]\n[logging]\nlevel = "debug"\n',
                           line=False, irc=True)
    first = twistd_server(config)
    irc_port = first.port("irc")
    key = data / "cloak.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    secret = key.read_text().strip()
    host = whois_host(irc_port, "vi")
    assert CLOAK.match(host) and host == HostCloak(secret.encode()).host_for(VICTIM)
    first.expect_log(r"vi signed on via irc from 127\.0\.0\.2 \(shown as " + re.escape(host))
    first.stop()

    second = twistd_server(config)
    assert key.read_text().strip() == secret
    assert whois_host(second.port("irc"), "vi") == host
    second.stop()
    for server in (first, second):
        assert not [line for line in server.log if secret in line]
        assert [line for line in server.log if "hosts are cloaked as *.cloak" in line]

    # another secret (set in the configuration): other cloaks
    other = server_config(data, (
        '[irc]\nflood_exempt = ["127.0.0.0/8"]\n[privacy]\ncloak_secret = "another-secret-of-some-length"\n'
    ), line=False, irc=True)
    third = twistd_server(other)
    assert whois_host(third.port("irc"), "vi") != host
    third.stop()
    assert not [line for line in third.log if "another-secret-of-some-length" in line]
