"""Two telnet users over a real twistd subprocess."""


def test_two_users_chat(line_server, line_client_factory):
    server, port = line_server
    alice = line_client_factory(port)
    bob = line_client_factory(port)
    alice.expect("Welcome")
    alice.send("/nick alice")
    alice.expect(r"you are alice")
    bob.send("/nick bob")
    bob.expect(r"you are bob")
    alice.send("/join #room")
    alice.expect(r"in #room \(1\)")
    bob.send("/join #room")
    alice.expect(r"\* bob joined #room")
    alice.send("hi bob")
    bob.expect(r"^\[#room\] <alice> hi bob$")
