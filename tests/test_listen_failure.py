"""A listener that cannot start stops chathub: a port something else holds, on any protocol's
listener (the first or a later one of several), or a description that is no endpoint, ends
twistd with a non-zero status and a log line naming the endpoint."""
from __future__ import annotations

import pytest

from tests.support import ANY_PORT, TwistdServer, server_config


def _refused(tmp_path, config: str) -> TwistdServer:
    return TwistdServer(tmp_path / "server", config).refused()


@pytest.mark.parametrize("kind", ["line", "irc", "http"])
@pytest.mark.parametrize("position", ["only", "second"])
def test_taken_port_stops_startup_naming_the_endpoint(tmp_path, taken_port, kind, position):
    taken = f"tcp:{taken_port}:interface=127.0.0.1"
    mine = [ANY_PORT, taken] if position == "second" else [taken]
    others = {other: [ANY_PORT] for other in ("line", "irc", "http") if other != kind}
    server = _refused(tmp_path, server_config(tmp_path / "var", **{kind: mine, **others}))
    (line,) = [l for l in server.log if "chathub cannot start" in l]
    assert f"the {kind} listener {taken} cannot listen" in line and "Address already in use" in line, line


def test_description_that_is_no_endpoint_stops_startup_naming_it(tmp_path):
    server = _refused(tmp_path, server_config(tmp_path / "var", line=False, irc="tcp:sixsixsixseven"))
    assert [l for l in server.log if "chathub cannot start: the irc listener 'tcp:sixsixsixseven'" in l], server.log
    assert not [l for l in server.log if "starting on" in l]


def test_missing_certificate_stops_startup_naming_the_listener(tmp_path):
    missing = tmp_path / "nowhere" / "cert.pem"
    description = f"ssl:0:privateKey={missing}:certKey={missing}:interface=127.0.0.1"
    server = _refused(tmp_path, server_config(tmp_path / "var", line=False, http=description))
    assert [l for l in server.log if f"chathub cannot start: the http listener '{description}'" in l], server.log
