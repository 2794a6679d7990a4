"""twistd plugin: ``twistd -n chathub [--config FILE] [--auth ...]``."""
from __future__ import annotations

from zope.interface import implementer

from twisted.application.service import IServiceMaker
from twisted.cred import credentials, strcred
from twisted.plugin import IPlugin
from twisted.python import usage


class Options(usage.Options, strcred.AuthOptionMixin):
    """Command-line options; each overrides the setting of the same meaning in the file."""

    supportedInterfaces = (credentials.IUsernamePassword,)
    optParameters = [
        ["config", "c", None, "TOML config file (default: built-in defaults, all on 127.0.0.1)"],
        ["data-dir", None, None, "Directory for the database and password file (server.data_dir)"],
        ["server-name", None, None, "Server name shown to IRC clients (server.name)"],
    ]
    optFlags = [
        ["no-guests", None, "Only users with a password may chat (auth.allow_guests = false)"],
    ]

    def __init__(self) -> None:
        super().__init__()
        self.listeners: dict[str, list[str]] = {}

    def _listener(self, kind: str, description: str) -> None:
        self.listeners.setdefault(kind, []).append(description)

    def opt_line(self, description: str) -> None:
        """Listen for the line protocol on this endpoint (repeatable; replaces listeners.line)."""
        self._listener("line", description)

    def opt_irc(self, description: str) -> None:
        """Listen for IRC on this endpoint (repeatable; replaces listeners.irc)."""
        self._listener("irc", description)

    def opt_http(self, description: str) -> None:
        """Serve HTTP and WebSocket on this endpoint (repeatable; replaces listeners.http)."""
        self._listener("http", description)

    def postOptions(self) -> None:
        from chathub.config import ConfigError, load_config

        server = {}
        if self["data-dir"]:
            server["data_dir"] = self["data-dir"]
        if self["server-name"]:
            server["name"] = self["server-name"]
        # kept for a reload (SIGHUP, REHASH), which reads the file again and applies these
        overrides = {
            "server": server,
            "listeners": self.listeners,
            "auth": {"allow_guests": False} if self["no-guests"] else {},
        }
        try:
            config = load_config(self["config"]).with_overrides(**overrides)
        except ConfigError as e:
            # the one message naming the key: twistd prints all of --help before a UsageError
            raise SystemExit(f"chathub cannot start: {e}") from None
        self["chathub-config"] = config
        self["chathub-overrides"] = {name: values for name, values in overrides.items() if values}


@implementer(IServiceMaker, IPlugin)
class ChathubServiceMaker:
    """Makes the chathub service for twistd."""

    tapname = "chathub"
    description = "A multi-protocol chat hub: telnet line protocol, IRC and WebSocket."
    options = Options

    def makeService(self, options):
        from chathub.app import ChathubService

        hub = ChathubService(
            options["chathub-config"], options.get("credCheckers", []), options.get("chathub-overrides")
        )
        hub.owns_process = True  # twistd runs it: SIGHUP reloads, SIGTERM has a deadline
        return hub


serviceMaker = ChathubServiceMaker()
