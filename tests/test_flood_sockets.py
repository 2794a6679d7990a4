"""Flood control over real sockets, with honest users of every protocol watching.

The attacks: a telnet guest that sent 9,151 messages a second (telnet had no flood
control), a chathub.v1 ``message`` whose text had thousands of lines (one message per
line at the cost of one), and the other way round a bridge in the exempt list that was
cut off with "Excess Flood" for a 5,000-message burst after its JOIN.
"""
from __future__ import annotations

import pytest_twisted

from tests.support import Bystanders, HubServer, IrcClient, LogCapture, history_server

#: the bridge's address: the only one in [limits] flood_exempt (everyone else is 127.0.0.1)
BRIDGE_HOST = "127.0.0.2"


async def honest_users(server: HubServer) -> Bystanders:
    """One honest user per protocol (ircuser, teluser, webuser), all in #lobby."""
    return await server.bystanders("#lobby", ("ircuser", "teluser", "webuser"))


def spam_seen(client: IrcClient, word: str) -> int:
    return sum(1 for line in client.texts if word in line)


@pytest_twisted.ensureDeferred
async def test_a_telnet_flooder_is_cut_off_while_everyone_else_is_served(tmp_path):
    server = await history_server(tmp_path)
    try:
        users = await honest_users(server)
        flooder = await server.telnet("flooder", rooms=["#lobby"])
        flooder.send(*[f"spam {i}" for i in range(10_000)])  # one write
        closing = await flooder.expect_re(r"^! ")
        assert closing == "! excess flood: more than 50 lines waiting; closing"
        await flooder.closed
        await users.irc.expect_re(r":flooder!\S+ QUIT :Excess flood")
        await users.still_served()
        # what got through: the burst (10, less the /nick and /join it spent), no more
        assert spam_seen(users.irc, "PRIVMSG #lobby :spam ") <= server.config.line.flood_burst
        stored = await server.store.latest("ircuser", "#lobby", None, 1000)
        assert sum(1 for e in stored if e.text.startswith("spam ")) <= server.config.line.flood_burst
    finally:
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_telnet_lines_past_the_burst_wait_their_turn_and_all_arrive(tmp_path):
    server = await history_server(tmp_path, line={"flood_rate": 20.0, "flood_burst": 5})
    try:
        users = await honest_users(server)
        paster = await server.telnet("paster", rooms=["#lobby"])
        paster.send(*[f"pasted {i}" for i in range(40)])  # past the burst, within flood_max_lines
        await users.irc.expect_count(r"PRIVMSG #lobby :pasted 39$")
        pasted = [l.params[-1] for l in users.irc.lines if l.params[-1:] and l.params[-1].startswith("pasted ")]
        assert pasted == [f"pasted {i}" for i in range(40)]  # slowed down, in order, none lost
        assert paster.transport.connected
        await users.still_served()
    finally:
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_a_multi_line_json_message_costs_one_unit_per_ten_lines(tmp_path):
    # 5 a second, 20 at once, 3 waiting at most: 6 requests of 100 lines each in one packet
    server = await history_server(
        tmp_path, websocket={"flood_rate": 5.0, "flood_burst": 20, "flood_max_queued": 3}
    )
    try:
        users = await honest_users(server)
        attacker = await server.ws("attacker", rooms=["#lobby"])
        too_long = "\n".join(f"long {i}" for i in range(101))  # [limits] message_lines is 100
        attacker.send_json({"type": "message", "target": "#lobby", "text": too_long, "ref": "x"})
        refused = await attacker.expect({"type": "error", "ref": "x"})
        assert refused["code"] == "message_too_long"
        text = "\n".join(f"line {i}" for i in range(100))
        attacker.send_together(*[{"type": "message", "target": "#lobby", "text": text}] * 6)
        flood = await attacker.expect({"type": "error", "code": "flood"})
        assert flood["message"] == "too many requests; closing"
        assert (await attacker.wait_closed())[1] == 4008
        await users.still_served()
        # each message of 100 lines cost 10: one request (two, had its login and join been
        # long ago) fills the budget of 20 and the rest wait until one too many is waiting;
        # at one unit a request, all six (600 lines) would have gone through at once
        assert spam_seen(users.irc, "PRIVMSG #lobby :line ") in (100, 200)
        assert spam_seen(users.irc, "PRIVMSG #lobby :long ") == 0
    finally:
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_an_exempt_bridge_bursting_5000_messages_after_its_join_is_never_disconnected(tmp_path):
    server = await history_server(tmp_path, irc={"flood_exempt": []}, limits={"flood_exempt": [BRIDGE_HOST]})
    count = 5000
    try:
        users = await honest_users(server)
        bridge = await server.connect("irc", source=BRIDGE_HOST)
        # registration (its login answered later), JOIN and the burst: all in one write
        bridge.send("NICK bridge", "USER bridge 0 * :bridge", "JOIN #lobby",
                    *[f"PRIVMSG #lobby :relay {i}" for i in range(count)])
        await users.irc.expect_count(rf"PRIVMSG #lobby :relay {count - 1}$", timeout=60)
        await users.telnet.expect_count(rf"<bridge> relay {count - 1}$", timeout=60)
        await users.ws.expect(lambda m: m.get("text") == f"relay {count - 1}", timeout=60)
        relayed = [
            l.params[-1] for l in users.irc.lines if l.command == "PRIVMSG" and l.params[-1].startswith("relay ")
        ]
        assert relayed == [f"relay {i}" for i in range(count)]  # every one, in order
        assert spam_seen(users.telnet, "<bridge> relay ") == count
        assert sum(1 for m in users.ws.received if str(m.get("text", "")).startswith("relay ")) == count
        await bridge.roundtrip()  # still connected and answering
        assert not any("ERROR" in line for line in bridge.texts)
        await users.still_served()
    finally:
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_a_non_exempt_irc_flooder_is_disconnected(tmp_path):
    server = await history_server(tmp_path, irc={"flood_exempt": []}, limits={"flood_exempt": [BRIDGE_HOST]})
    try:
        with LogCapture() as log:
            users = await honest_users(server)
            flooder = await server.irc("flooder", rooms=["#lobby"])
            flooder.send(*[f"PRIVMSG #lobby :spam {i}" for i in range(5000)])
            error = await flooder.expect("ERROR")
            assert error.params == ["Excess Flood"]
            await flooder.closed
            await users.still_served()
            assert spam_seen(users.irc, "PRIVMSG #lobby :spam ") <= server.config.irc.flood_burst
        assert log.failures == []
    finally:
        await server.stop()
