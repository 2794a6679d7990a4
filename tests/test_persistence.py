"""Issue 5 end to end on a twistd subprocess with SQLite: what the hub delivered survives kill -9,
and accounts, registered rooms' topics, modes and bans survive a restart."""
from __future__ import annotations

import base64
import re
import signal

from chathub.auth.cloak import HostCloak, load_secret
from tests.support import server_config


def _login(client, nick, password=None):
    client.expect("Welcome")
    client.send(f"/nick {nick}" + (f" {password}" if password else ""))
    client.expect(rf"you are {nick}")


def test_delivered_messages_survive_kill_9(tmp_path, twistd_server, line_client_factory):
    config = server_config(tmp_path / "var", irc=True)
    server = twistd_server(config)
    port, irc_port = server.port("line"), server.port("irc")
    alice, bob = line_client_factory(port), line_client_factory(port)
    _login(alice, "alice")
    _login(bob, "bob")
    # account holders: their private conversation outlives their connections (a guest's is
    # kept per connection, docs/storage.md)
    for client, nick in ((alice, "alice"), (bob, "bob")):
        client.send("/register pw-of-" + nick)
        client.expect(rf"account {nick} registered")
    alice.send("/join #keep")
    alice.expect(r"in #keep")
    bob.send("/join #keep")
    alice.expect(r"bob joined #keep")
    for i in range(20):
        alice.send(f"message {i}")
    # the last one reached bob: the hub delivered all 20
    bob.expect(r"<alice> message 19$")
    alice.send("/msg bob private question")
    bob.expect(r"<- alice: private question")
    bob.send("/msg alice secret reply")
    alice.expect(r"<- bob: secret reply")
    server.kill(signal.SIGKILL)

    restarted = twistd_server(config)
    port, irc_port = restarted.port("line"), restarted.port("irc")
    carol = line_client_factory(port)
    _login(carol, "carol")
    carol.send("/join #keep")
    carol.expect(r"last 20 messages in #keep")
    replay = [carol.readline() for _ in range(20)]
    assert [line.split("<alice> ")[1] for line in replay] == [f"message {i}" for i in range(20)]
    carol.expect(r"end of history of #keep")
    # the recipient, logged in again (IRC, SASL PLAIN), reads the private conversation
    irc = line_client_factory(irc_port)
    blob = base64.b64encode(b"alice\0alice\0pw-of-alice").decode()
    for line in ("CAP LS 302", "CAP REQ :sasl draft/chathistory batch", "NICK alice", "USER a 0 * :A",
                 "AUTHENTICATE PLAIN", "AUTHENTICATE " + blob, "CAP END"):
        irc.send(line)
    irc.expect(r" 903 ")
    irc.expect(r" 001 alice ")
    irc.send("CHATHISTORY LATEST bob * 10")
    irc.expect(r"^:\S+ BATCH \+\S+ chathistory bob$")
    private = [irc.expect(r"PRIVMSG (bob|alice) :") for _ in range(2)]
    host = HostCloak(load_secret(str(tmp_path / "var" / "cloak.key"))).host_for("127.0.0.1")
    assert [re.sub(r"^@\S+ ", "", line) for line in private] == [
        f":alice!alice@{host} PRIVMSG bob :private question",
        f":bob!bob@{host} PRIVMSG alice :secret reply",
    ], private
    irc.expect(r"^:\S+ BATCH -")
    assert not restarted.exceptions


def test_accounts_and_room_state_survive_restart(tmp_path, twistd_server, line_client_factory):
    config = server_config(tmp_path / "var")
    server = twistd_server(config)
    port = server.port("line")
    alice = line_client_factory(port)
    _login(alice, "alice")
    alice.send("/register hunter22")
    alice.expect(r"account alice registered")
    # a room made by an account holder is registered: its state persists
    alice.send("/join #club")
    alice.expect(r"in #club \(1\): @alice")
    alice.send("/topic members only")
    alice.expect(r"you set the topic of #club")
    alice.send("/mode #club +mb *!*@banned.example")
    alice.expect(r"you set mode \+m \+b \*!\*@banned.example on #club")
    server.stop()
    assert "hunter22" not in "\n".join(server.log)

    port = twistd_server(config).port("line")
    guest = line_client_factory(port)
    guest.expect("Welcome")
    guest.send("/nick alice")
    guest.expect(r"! .*registered")
    guest.send("/nick alice wrongpass")
    guest.expect(r"! login as alice refused")
    owner = line_client_factory(port)
    _login(owner, "alice", "hunter22")
    owner.send("/join #club")
    owner.expect(r"topic of #club: members only")
    # the founder gets operator status back from the stored room
    owner.expect(r"in #club \(1\): @alice")
    owner.send("/mode #club")
    owner.expect(r"modes of #club: \+mnt$")
    owner.send("/mode #club +b")
    owner.expect(r"#club ban \*!\*@banned.example \(set by alice!")
