"""Flood control over real sockets, with honest users of every protocol watching.

The attacks: a telnet guest that sent 9,151 messages a second (telnet had no flood
control), a chathub.v1 ``message`` whose text had thousands of lines (one message per
line at the cost of one), and the other way round a bridge in the exempt list that was
cut off with "Excess Flood" for a 5,000-message burst after its JOIN.
"""
from __future__ import annotations

import pytest_twisted
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from tests.browser_helpers import close_clients
from tests.support import IrcClient, LogCapture, connect_irc, every_protocol_server, quit_irc_clients, register_irc
from tests.test_ws_json import join as join_json
from tests.test_ws_json import login as login_json

#: the bridge's address: the only one in [limits] flood_exempt (everyone else is 127.0.0.1)
BRIDGE_HOST = "127.0.0.2"


def _reactor():
    from twisted.internet import reactor

    return reactor


async def telnet_user(server, nick: str, clients: list, room: str = "#lobby") -> IrcClient:
    """A telnet user in ``room``; it goes into ``clients`` (``close_all`` ends it with /quit)."""
    client = await connect_irc(server.line_port)
    client.telnet = True
    clients.append(client)
    client.send(f"/nick {nick}", f"/join {room}")
    await client.expect_re(rf"^\* in {room} ")
    return client


async def honest_users(server, clients: list) -> dict:
    """One honest user per protocol, all in #lobby."""
    users = {
        "irc": await register_irc(await connect_irc(server.irc_port, clients), "ircuser", rooms=["#lobby"]),
        "telnet": await telnet_user(server, "teluser", clients),
        "json": await login_json(server.http_port, "webuser"),
    }
    await join_json(users["json"], "#lobby", "webuser")
    return users


async def still_served(users: dict, tag: str) -> None:
    """Each honest user says something and every other one receives it."""
    users["irc"].send(f"PRIVMSG #lobby :{tag} from irc")
    users["telnet"].send(f"{tag} from telnet")
    users["json"].send_json({"type": "message", "target": "#lobby", "text": f"{tag} from json"})
    for source in ("irc", "telnet", "json"):
        text = f"{tag} from {source}"
        for name, user in users.items():
            if name == source:
                continue
            if name == "json":
                await user.expect(lambda m, text=text: m.get("type") == "message" and m.get("text") == text)
            else:
                await user.expect_re(rf"{text}$")


async def close_all(server, clients: list) -> None:
    """End every client (telnet ones with /quit, IRC ones with QUIT) and stop the server."""
    for client in [c for c in clients if getattr(c, "telnet", False)]:
        clients.remove(client)
        if client.transport.connected:
            client.send("/quit")
            await client.closed
    await quit_irc_clients(clients)
    await close_clients()
    await server.stop()


def spam_seen(client: IrcClient, word: str) -> int:
    return sum(1 for line in client.texts if word in line)


@pytest_twisted.ensureDeferred
async def test_a_telnet_flooder_is_cut_off_while_everyone_else_is_served(tmp_path):
    server = await every_protocol_server(tmp_path)
    clients: list = []
    try:
        users = await honest_users(server, clients)
        flooder = await telnet_user(server, "flooder", clients)
        flooder.send(*[f"spam {i}" for i in range(10_000)])  # one write
        closing = await flooder.expect_re(r"^! ")
        assert closing == "! excess flood: more than 50 lines waiting; closing"
        await flooder.closed
        await users["irc"].expect_re(r":flooder!\S+ QUIT :Excess flood")
        await still_served(users, "after the flood")
        # what got through: the burst (10, less the /nick and /join it spent), no more
        assert spam_seen(users["irc"], "PRIVMSG #lobby :spam ") <= server.config.line.flood_burst
        stored = await server.store.latest("ircuser", "#lobby", None, 1000)
        assert sum(1 for e in stored if e.text.startswith("spam ")) <= server.config.line.flood_burst
    finally:
        await close_all(server, clients)


@pytest_twisted.ensureDeferred
async def test_telnet_lines_past_the_burst_wait_their_turn_and_all_arrive(tmp_path):
    server = await every_protocol_server(tmp_path, line={"flood_rate": 20.0, "flood_burst": 5})
    clients: list = []
    try:
        users = await honest_users(server, clients)
        paster = await telnet_user(server, "paster", clients)
        paster.send(*[f"pasted {i}" for i in range(40)])  # past the burst, within flood_max_lines
        await users["irc"].expect_count(r"PRIVMSG #lobby :pasted 39$")
        pasted = [l.params[-1] for l in users["irc"].lines if l.params[-1:] and l.params[-1].startswith("pasted ")]
        assert pasted == [f"pasted {i}" for i in range(40)]  # slowed down, in order, none lost
        assert paster.transport.connected
        await still_served(users, "after the paste")
    finally:
        await close_all(server, clients)


@pytest_twisted.ensureDeferred
async def test_a_multi_line_json_message_costs_one_unit_per_line(tmp_path):
    # 5 a second, 20 at once, 3 waiting at most: 6 requests of 20 lines each in one packet
    server = await every_protocol_server(
        tmp_path, websocket={"flood_rate": 5.0, "flood_burst": 20, "flood_max_queued": 3}
    )
    clients: list = []
    try:
        users = await honest_users(server, clients)
        attacker = await login_json(server.http_port, "attacker")
        await join_json(attacker, "#lobby", "attacker")
        too_long = "\n".join(f"long {i}" for i in range(21))
        attacker.send_json({"type": "message", "target": "#lobby", "text": too_long, "ref": "x"})
        refused = await attacker.expect({"type": "error", "ref": "x"})
        assert refused["code"] == "too_many_lines"
        text = "\n".join(f"line {i}" for i in range(20))
        attacker.send_together(*[{"type": "message", "target": "#lobby", "text": text}] * 6)
        flood = await attacker.expect({"type": "error", "code": "flood"})
        assert flood["message"] == "too many requests; closing"
        assert (await attacker.wait_closed())[1] == 4008
        await still_served(users, "after the lines")
        # each of the 20 lines was charged: one request (two, had its login and join been
        # long ago) fills the budget of 20 and the rest wait until one too many is waiting;
        # at one unit a request, all six (120 lines) would have gone through at once
        assert spam_seen(users["irc"], "PRIVMSG #lobby :line ") in (20, 40)
        assert spam_seen(users["irc"], "PRIVMSG #lobby :long ") == 0
    finally:
        await close_all(server, clients)


async def bridge_client(server) -> IrcClient:
    """An IRC client connecting from BRIDGE_HOST (the exempt address)."""
    endpoint = TCP4ClientEndpoint(_reactor(), "127.0.0.1", server.irc_port, bindAddress=(BRIDGE_HOST, 0))
    return await connectProtocol(endpoint, IrcClient())


@pytest_twisted.ensureDeferred
async def test_an_exempt_bridge_bursting_5000_messages_after_its_join_is_never_disconnected(tmp_path):
    server = await every_protocol_server(tmp_path, irc={"flood_exempt": []}, limits={"flood_exempt": [BRIDGE_HOST]})
    clients: list = []
    count = 5000
    try:
        users = await honest_users(server, clients)
        bridge = await bridge_client(server)
        clients.append(bridge)
        # registration (its login answered later), JOIN and the burst: all in one write
        bridge.send("NICK bridge", "USER bridge 0 * :bridge", "JOIN #lobby",
                    *[f"PRIVMSG #lobby :relay {i}" for i in range(count)])
        await users["irc"].expect_count(rf"PRIVMSG #lobby :relay {count - 1}$", timeout=60)
        await users["telnet"].expect_count(rf"<bridge> relay {count - 1}$", timeout=60)
        await users["json"].expect(lambda m: m.get("text") == f"relay {count - 1}", timeout=60)
        relayed = [l.params[-1] for l in users["irc"].lines if l.command == "PRIVMSG" and l.params[-1].startswith("relay ")]
        assert relayed == [f"relay {i}" for i in range(count)]  # every one, in order
        assert spam_seen(users["telnet"], "<bridge> relay ") == count
        assert sum(1 for m in users["json"].received if str(m.get("text", "")).startswith("relay ")) == count
        await bridge.roundtrip()  # still connected and answering
        assert not any("ERROR" in line for line in bridge.texts)
        await still_served(users, "after the relay")
    finally:
        await close_all(server, clients)


@pytest_twisted.ensureDeferred
async def test_a_non_exempt_irc_flooder_is_disconnected(tmp_path):
    server = await every_protocol_server(tmp_path, irc={"flood_exempt": []}, limits={"flood_exempt": [BRIDGE_HOST]})
    clients: list = []
    try:
        with LogCapture() as log:
            users = await honest_users(server, clients)
            flooder = await register_irc(await connect_irc(server.irc_port, clients), "flooder", rooms=["#lobby"])
            flooder.send(*[f"PRIVMSG #lobby :spam {i}" for i in range(5000)])
            error = await flooder.expect("ERROR")
            assert error.params == ["Excess Flood"]
            await flooder.closed
            await still_served(users, "after the flood")
            assert spam_seen(users["irc"], "PRIVMSG #lobby :spam ") <= server.config.irc.flood_burst
        assert log.failures == []
    finally:
        await close_all(server, clients)
