"""Value checks on load: every section uses the same helpers (chathub.config.schema), and
each refusal names the key."""
from __future__ import annotations

import json

import pytest

from chathub.config import Config, ConfigError, parse_config
from chathub.config.irc import OPERATOR_PRIVILEGES
from chathub.config.schema import require_at_least, require_networks, require_one_of, require_positive
from tests.support import OPER_HASH, refusal_naming


def operator(**fields) -> str:
    entry = {"name": "boss", "password_hash": OPER_HASH, **fields}
    # JSON strings and lists of strings are valid TOML values
    body = "\n".join(f"{k} = {json.dumps(v)}" for k, v in entry.items())
    return f"[[irc.operators]]\n{body}\n"


@pytest.mark.parametrize(
    "text, key, wording",
    [
        ("[limits]\ntopic_length = 0\n", "limits.topic_length", "greater than 0"),
        ("[limits]\naway_length = -5\n", "limits.away_length", "greater than 0"),
        ("[limits]\nmax_rooms_per_user = 0\n", "limits.max_rooms_per_user", "greater than 0"),
        ("[websocket]\nflood_rate = 0\n", "websocket.flood_rate", "greater than 0"),
        ("[websocket]\nping_interval = -1\n", "websocket.ping_interval", "at least 0"),
        ("[irc]\nflood_rate = 0\n", "irc.flood_rate", "greater than 0"),
        ("[irc]\nmax_bans = 0\n", "irc.max_bans", "at least 1"),
        ("[limits]\nreason_length = 0\n", "limits.reason_length", "greater than 0"),
        ('[websocket]\ndefault_rooms = ["lobby"]\n', "websocket.default_rooms[0]", "a room name"),
        ("[websocket]\ndefault_rooms = [" + ", ".join(f'"#r{i}"' for i in range(11)) + "]\n",
         "websocket.default_rooms", "at most 10"),
        ("[history]\nprune_interval_seconds = 0\n", "history.prune_interval_seconds", "greater than 0"),
        ("[history]\njoin_replay = -1\n", "history.join_replay", "at least 0"),
        ('[storage]\nbackend = "mysql"\n', "storage.backend", 'one of "sqlite", "postgres"'),
    ],
)
def test_numbers_and_choices_are_checked_with_one_wording(text, key, wording):
    assert wording in refusal_naming(text, key)


@pytest.mark.parametrize("entry", ["localhost", "10.0.0.0/33", "300.1.1.1", ""])
def test_flood_exempt_entries_must_be_addresses_or_networks(entry):
    message = refusal_naming(f'[irc]\nflood_exempt = ["127.0.0.1", "{entry}"]\n', "irc.flood_exempt[1]")
    assert "IP address or CIDR" in message


def test_flood_exempt_takes_addresses_and_networks_of_both_families():
    config = parse_config('[irc]\nflood_exempt = ["127.0.0.1", "10.0.0.0/8", "::1", "2001:db8::/32", "192.0.2.1/24"]\n')
    assert len(config.irc.flood_exempt) == 5


def test_operator_password_must_be_an_argon2_hash():
    message = refusal_naming(operator(password_hash="hunter2"), "irc.operators[0].password_hash")
    assert "argon2" in message and "hunter2" not in message  # never echo what may be a password
    config = parse_config(operator())
    assert config.irc.operators[0].password_hash == OPER_HASH


def test_operator_privileges_come_from_the_known_set():
    message = refusal_naming(operator(privileges=["kill", "die"]), "irc.operators[0].privileges[1]")
    assert "'die'" in message
    config = parse_config(operator(privileges=list(OPERATOR_PRIVILEGES)))
    assert config.irc.operators[0].privileges == ["kill", "wallops"]


def test_with_overrides_checks_operators_too():
    with pytest.raises(ConfigError, match="'irc.operators\\[0\\].password_hash'"):
        Config().with_overrides(irc={"operators": [{"name": "boss", "password_hash": "plain"}]})


def test_the_helpers_name_the_key():
    with pytest.raises(ConfigError, match=r"'a\.b' must be greater than 0, not 0"):
        require_positive("a", b=0)
    with pytest.raises(ConfigError, match=r"'a\.c' must be at least 2, not 1"):
        require_at_least("a", 2, c=1)
    with pytest.raises(ConfigError, match=r"'top' must be one of \"x\", \"y\", not 'z'"):
        require_one_of("", "top", "z", ("x", "y"))
    with pytest.raises(ConfigError, match=r"'a\.nets\[0\]'"):
        require_networks("a", "nets", ["nope"])
    require_positive("a", b=0.5)
    require_at_least("a", 0, c=0)
    require_networks("a", "nets", ["::/0"])
