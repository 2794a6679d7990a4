"""Issue 10, item 16 across a real restart of twistd (SQLite): a restart no longer hands
rooms to whoever comes first.

A guest made #lobby, set its topic and then registered an account; after a restart the
topic was gone, and the first account holder to join (someone else) was made operator and
stored as the room's permanent operator. Now the guest who made a room and registers while
still its operator becomes its founder; the founder and the accounts it made operators get
their status back after a restart, nobody else does, and a guest room nobody registered is
nobody's: it ends at the restart, and its history does not pass to the next room of its name.
"""
from __future__ import annotations

from tests.support import server_config


def login(client, nick, password=None):
    client.expect("Welcome")
    client.send(f"/nick {nick}" + (f" {password}" if password else ""))
    client.expect(rf"you are {nick}")


def register(client, nick, password):
    client.send(f"/register {password}")
    client.expect(rf"account {nick} registered")


def test_founders_and_their_operators_survive_a_restart_and_nobody_else(tmp_path, twistd_server, line_client_factory):
    config = server_config(tmp_path / "var")
    server = twistd_server(config)
    port = server.port("line")
    alice, bob, dave = (line_client_factory(port) for _ in range(3))
    eve, frank = line_client_factory(port), line_client_factory(port)
    for client, nick in ((alice, "alice"), (bob, "bob"), (dave, "dave"), (eve, "eve"), (frank, "frank")):
        login(client, nick)
    # a guest makes the room and sets its topic, then registers: it becomes the founder
    alice.send("/join #lobby")
    alice.expect(r"in #lobby \(1\): @alice")
    alice.send("/topic welcome all")
    alice.expect(r"you set the topic of #lobby")
    register(alice, "alice", "pw-alice")
    for client, nick in ((bob, "bob"), (dave, "dave"), (frank, "frank")):
        register(client, nick, f"pw-{nick}")
    bob.send("/join #lobby")
    bob.expect(r"in #lobby \(2\): @alice bob")
    dave.send("/join #lobby")
    dave.expect(r"in #lobby \(3\): @alice bob dave")
    alice.send("/mode #lobby +o bob")  # the founder's grant: kept
    alice.expect(r"you set mode \+o bob on #lobby")
    bob.send("/mode #lobby +o dave")  # an operator's, not the founder's: for now only
    bob.expect(r"you set mode \+o dave on #lobby")
    # a guest room, with an account holder left alone in it
    eve.send("/join #guestroom")
    eve.expect(r"in #guestroom \(1\): @eve")
    eve.send("/topic eve's own")
    eve.expect(r"you set the topic of #guestroom")
    eve.send("eve's secret plans")
    frank.send("/join #guestroom")
    frank.expect(r"<eve> eve's secret plans")
    frank.expect(r"end of history of #guestroom")
    eve.send("/part #guestroom")
    frank.expect(r"eve left #guestroom")
    server.stop()

    restarted = twistd_server(config)
    port = restarted.port("line")
    dave, bob, alice, frank = (line_client_factory(port) for _ in range(4))
    # the first account holder into the empty room gets nothing, and the topic is back
    login(dave, "dave", "pw-dave")
    dave.send("/join #lobby")
    dave.expect(r"topic of #lobby: welcome all")
    dave.expect(r"in #lobby \(1\): dave$")
    login(bob, "bob", "pw-bob")
    bob.send("/join #lobby")
    bob.expect(r"in #lobby \(2\): @bob dave$")
    login(alice, "alice", "pw-alice")
    alice.send("/join #lobby")
    alice.expect(r"in #lobby \(3\): @alice @bob dave$")
    # nothing dave was given by bob came back, and the founder still decides
    alice.send("/mode #lobby -o bob")
    alice.expect(r"you set mode -o bob on #lobby")
    # the guest room ended with the restart; frank makes a new one, with none of its past
    login(frank, "frank", "pw-frank")
    frank.send("/join #guestroom")
    frank.expect(r"in #guestroom \(1\): @frank$")
    frank.send("/names")
    frank.expect(r"in #guestroom")
    assert not any("eve" in line for line in frank.seen), frank.seen
    restarted.stop()

    # the founder's -o was written down too: bob no longer gets ops back
    again = twistd_server(config)
    port = again.port("line")
    bob = line_client_factory(port)
    login(bob, "bob", "pw-bob")
    bob.send("/join #lobby")
    bob.expect(r"topic of #lobby: welcome all")
    bob.expect(r"in #lobby \(1\): bob$")
    assert not server.exceptions and not restarted.exceptions and not again.exceptions
