"""Configuration: defaults, validation that names the bad key, command-line overrides."""
from __future__ import annotations

import dataclasses
import re
import subprocess
import sys

import pytest

from chathub.config import Config, ConfigError, load_config
from tests.support import REPO, refusal_naming, server_config

CORE_SECTIONS = ("server", "listeners", "auth", "limits", "line")


def test_defaults_are_all_on_loopback():
    config = load_config(None)
    assert config == Config() and config.source is None
    assert config.listeners.line == ["tcp:2323:interface=127.0.0.1"]
    assert config.listeners.irc == ["tcp:6667:interface=127.0.0.1"]
    assert config.listeners.http == ["tcp:8080:interface=127.0.0.1"]
    assert config.server.data_dir == "./var"
    assert 64 * 1024 <= config.limits.sendq_bytes <= 1024 * 1024  # "a few hundred KiB"
    assert config.auth.allow_guests is True
    assert config.data_path("passwd") == "./var/passwd"
    assert config.data_path("/etc/chathub/passwd") == "/etc/chathub/passwd"


def test_shipped_config_is_valid_and_documents_the_core_settings():
    path = REPO / "conf" / "chathub.toml"
    config = load_config(str(path))
    assert config.source == str(path)
    text = path.read_text()
    for section in CORE_SECTIONS:
        assert re.search(rf"^\[{section}\]$", text, re.M), section
        for f in dataclasses.fields(getattr(config, section)):
            # a comment above it (settings of one kind may share one)
            match = re.search(rf"^(#.*\n)+([a-z_]+ = .*\n)*{f.name} = ", text, re.M)
            assert match, f"{section}.{f.name} is not in conf/chathub.toml with a comment above it"


def test_a_partial_file_keeps_the_other_defaults(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[limits]\nsendq_bytes = 4096\nregistration_timeout = 5\n[listeners]\nirc = []\n')
    config = load_config(str(path))
    assert config.limits.sendq_bytes == 4096
    assert config.limits.registration_timeout == 5.0 and isinstance(config.limits.registration_timeout, float)
    assert config.listeners.irc == []
    assert config.listeners.line == Config().listeners.line
    assert config.server == Config().server


@pytest.mark.parametrize(
    "text, key",
    [
        ("[irc]\nping_timeoutt = 5\n", "irc.ping_timeoutt"),
        ("[bogus]\nx = 1\n", "bogus"),
        ("toplevel = 1\n", "toplevel"),
        ("[limits]\nsendq_byte = 1\n", "limits.sendq_byte"),
        ("source = 'x'\n", "source"),
    ],
)
def test_unknown_key_is_named(text, key):
    assert "unknown" in refusal_naming(text, key)


@pytest.mark.parametrize(
    "text, key",
    [
        ('[limits]\nsendq_bytes = "big"\n', "limits.sendq_bytes"),
        ("[limits]\nsendq_bytes = true\n", "limits.sendq_bytes"),  # a bool is no integer
        ("[limits]\nsendq_bytes = 1.5\n", "limits.sendq_bytes"),
        ('[auth]\nallow_guests = "no"\n', "auth.allow_guests"),
        ('[listeners]\nline = "tcp:1"\n', "listeners.line"),
        ("[listeners]\nline = [2323]\n", "listeners.line[0]"),
        ("[server]\nname = 5\n", "server.name"),
        ("limits = 5\n", "limits"),
        ("[irc]\nping_timeout = 'soon'\n", "irc.ping_timeout"),
    ],
)
def test_wrong_type_is_named(text, key):
    assert " must be " in refusal_naming(text, key)


@pytest.mark.parametrize(
    "text, key",
    [
        ("[limits]\nsendq_bytes = 0\n", "limits.sendq_bytes"),
        ("[limits]\nregistration_timeout = -1\n", "limits.registration_timeout"),
        ('[server]\nname = "two words"\n', "server.name"),
        ('[auth]\ncheckers = ["ldap"]\n', "auth.checkers"),
    ],
)
def test_invalid_value_is_named(text, key):
    refusal_naming(text, key)


def test_file_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError, match="cannot read config file .*missing.toml"):
        load_config(str(missing))
    broken = tmp_path / "broken.toml"
    broken.write_text("[limits\n")
    with pytest.raises(ConfigError, match="broken.toml.*not valid TOML"):
        load_config(str(broken))
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("[irc]\nping_timeoutt = 5\n")
    with pytest.raises(ConfigError, match=r"wrong\.toml: unknown setting 'irc\.ping_timeoutt'"):
        load_config(str(wrong))
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(b'[server]\nadmin_name = "J\xe9r\xf4me"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(str(latin1))


def test_with_overrides_validates_too():
    config = Config().with_overrides(listeners={"line": ["tcp:0:interface=127.0.0.1"]}, server={"data_dir": "/srv/x"})
    assert config.listeners.line == ["tcp:0:interface=127.0.0.1"]
    assert config.listeners.irc == Config().listeners.irc
    assert config.server.data_dir == "/srv/x" and config.data_path("passwd") == "/srv/x/passwd"
    with pytest.raises(ConfigError, match="'limits.sendq_bytes'"):
        Config().with_overrides(limits={"sendq_bytes": -5})
    with pytest.raises(ConfigError, match="'server.nope'"):
        Config().with_overrides(server={"nope": 1})


def _plugin_options(*args: str):
    from twisted.plugins.chathub_plugin import Options

    options = Options()
    options.parseOptions(list(args))
    return options


def test_command_line_overrides_the_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(server_config(tmp_path / "from-file", line="tcp:4000:interface=127.0.0.1"))
    options = _plugin_options(
        "--config", str(path),
        "--line", "tcp:5000:interface=127.0.0.1",
        "--line", "unix:" + str(tmp_path / "line.sock"),
        "--data-dir", str(tmp_path / "from-cli"),
        "--no-guests",
        "--server-name", "hub.example",
    )
    config = options["chathub-config"]
    assert config.listeners.line == ["tcp:5000:interface=127.0.0.1", "unix:" + str(tmp_path / "line.sock")]
    assert config.listeners.irc == []  # untouched, from the file
    assert config.server.data_dir == str(tmp_path / "from-cli")
    assert config.server.name == "hub.example"
    assert config.auth.allow_guests is False
    # without options the file stands
    config = _plugin_options("--config", str(path))["chathub-config"]
    assert config.listeners.line == ["tcp:4000:interface=127.0.0.1"]
    assert config.server.data_dir == str(tmp_path / "from-file")
    assert config.auth.allow_guests is True


def test_command_line_without_a_file_uses_the_defaults():
    config = _plugin_options()["chathub-config"]
    assert config == Config()


def test_bad_file_stops_with_one_message():
    # not a UsageError: twistd prints the whole --help before one of those
    with pytest.raises(SystemExit, match="^chathub cannot start: cannot read config file /nonexistent/chathub.toml"):
        _plugin_options("--config", "/nonexistent/chathub.toml")


@pytest.mark.parametrize(
    "extra, key",
    [
        ("[irc]\nping_timeoutt = 5\n", "irc.ping_timeoutt"),
        ('[limits]\nsendq_bytes = "lots"\n', "limits.sendq_bytes"),
    ],
)
def test_twistd_refuses_to_start_with_a_bad_config(tmp_path, extra, key):
    path = tmp_path / "bad.toml"
    path.write_text(server_config(tmp_path / "var", extra))
    result = subprocess.run(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
         "-n", "--pidfile=", "--logfile=-", "chathub", "--config", str(path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    # the one message naming the key and the file, not twistd's --help first
    assert output.strip().splitlines() == [f"chathub cannot start: {path}: {refusal_naming(extra, key)}"]
    assert not (tmp_path / "var").exists()  # nothing was started
