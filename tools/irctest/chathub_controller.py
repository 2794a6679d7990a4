"""irctest controller for chathub (https://github.com/progval/irctest).

Starts ``twistd chathub`` on a fresh data directory for each test, with the server name,
operator and settings irctest expects, written to a TOML config file in that directory;
accounts are registered through NickServ, chathub's virtual service. It imports nothing of
chathub: only the config file and the command line, as irctest's other controllers.

Use it with ``--controller chathub_controller`` and this directory on ``PYTHONPATH``
(chathub's ``tools/run-irctest --controller`` does both). The server runs under the
Python running irctest (its ``twistd``), which must have chathub installed; set
``IRCTEST_CHATHUB_TWISTD`` to another twistd command (e.g. ``/srv/chathub/.venv/bin/twistd``)
to use that instead.
"""
from __future__ import annotations

import os
import shlex
import sys
from typing import Optional, Set, Type

from irctest import patma
from irctest.basecontrollers import BaseServerController, DirectoryBasedController
from irctest.cases import BaseServerTestCase
from irctest.runner import NotImplementedByController
from irctest.specifications import Capabilities, OptionalBehaviors

TEMPLATE_CONFIG = """\
[server]
name = "My.Little.Server"
network = "IrctestNet"
description = "test server"
data_dir = "{directory}"

[listeners]
line = []
irc = ["{irc_listener}"]
http = [{http_listeners}]

[auth]
# accounts are registered over IRC (NickServ, REGISTER) and kept in the store
checkers = ["store"]
allow_guests = true
# irctest registers accounts with passwords as short as three characters
min_password_length = 1

[limits]
# irctest opens many connections from loopback at once and sends bursts
connection_limits_exempt = ["127.0.0.0/8", "::1"]
flood_exempt = ["127.0.0.0/8", "::1"]

[storage]
sqlite_path = "chathub.sqlite3"

[websocket]
# irctest's WebSocket client names the test host and no page origin: a loopback test server
hostnames = ["*"]
allowed_origins = ["*"]

[irc]
flood_exempt = ["127.0.0.0/8", "::1"]
# draft/account-registration before-connect, when the test case asks for it
register_before_connect = {before_connect}

[[irc.operators]]
name = "operuser"
# argon2 hash of "operpassword"
password_hash = "$argon2id$v=19$m=65536,t=3,p=4$e1C0ac/NyS+s7wbw8+egIg$fEyWyhh56FqeKvs6FryO/n/YB8BFJtoWP4wBzo3EUN8"
privileges = ["kill", "wallops"]
hostmask = "*"
"""


class ChathubController(BaseServerController, DirectoryBasedController):
    """Runs chathub's IRC listener (and, for the WebSocket tests, its HTTP one)."""

    software_name = "chathub"
    supported_sasl_mechanisms: Set[str] = {"PLAIN", "SCRAM-SHA-256"}
    supports_sts = False
    # NickServ is chathub's own virtual service: it is up as soon as the port is
    nickserv = "NickServ"

    capabilities = frozenset(
        (
            Capabilities.ACCOUNT_NOTIFY,
            Capabilities.ACCOUNT_TAG,
            Capabilities.AWAY_NOTIFY,
            Capabilities.BATCH,
            Capabilities.ECHO_MESSAGE,
            Capabilities.EXTENDED_JOIN,
            Capabilities.EXTENDED_MONITOR,
            Capabilities.LABELED_RESPONSE,
            Capabilities.MESSAGE_TAGS,
            Capabilities.MULTILINE,
            Capabilities.MULTI_PREFIX,
            Capabilities.READ_MARKER,
            Capabilities.SERVER_TIME,
            Capabilities.SETNAME,
        )
    )

    optional_behaviors = frozenset(
        (
            OptionalBehaviors.BAN_EXCEPTION_MODE,
            OptionalBehaviors.CAP_REQ_MINUS,
            OptionalBehaviors.ELIST_M,
            OptionalBehaviors.ELIST_N,
            OptionalBehaviors.ELIST_U,
            OptionalBehaviors.INVITE_EXCEPTION_MODE,
            OptionalBehaviors.METADATA_BEFORE_CONNECT,
            OptionalBehaviors.MULTI_JOIN,
            OptionalBehaviors.MULTI_KICK,
            OptionalBehaviors.MULTI_PRIVMSG,
            OptionalBehaviors.NO_CTCP,
            OptionalBehaviors.SASL_AFTER_REGISTRATION,
            OptionalBehaviors.SASL_REAUTHENTICATION,
        )
    )

    #: EXTBAN=,am: m: mutes (chathub/hub/rooms.py)
    extban_mute_char = "m"

    isupport = {
        "BOT": "B",
        "CASEMAPPING": "ascii",
        "ELIST": "MNU",
        "INVEX": "I",
        "MONITOR": patma.ANYSTR,
        "MSGREFTYPES": "msgid,timestamp",
        "PREFIX": "(ov)@+",
        "STATUSMSG": "@+",
        "TARGMAX": patma.ANYSTR,
        "UTF8ONLY": None,
        "WHOX": None,
    }

    def create_config(self) -> None:
        super().create_config()
        with self.open_file("chathub.toml"):
            pass

    def run(
        self,
        hostname: str,
        port: int,
        *,
        password: Optional[str],
        ssl: bool,
        run_services: bool,
        faketime: Optional[str],
        websocket_hostname: Optional[str] = None,
        websocket_port: Optional[int] = None,
    ) -> None:
        if password is not None:
            # PASS logs in to an account here; there is no server password
            raise NotImplementedByController("PASS server password")
        http_listeners = ""
        if websocket_port is not None:
            # IRC over WebSocket: chathub's HTTP listener takes a WebSocket upgrade at / as
            # at /ws (irctest connects to ws://host:port)
            http_listeners = f'"tcp:{websocket_port}:interface={websocket_hostname or hostname}"'
        assert self.proc is None
        self.create_config()
        assert self.directory
        self.hostname = hostname
        self.port = port
        if ssl:
            self.gen_ssl()
            irc = f"ssl:{port}:interface={hostname}:privateKey={self.key_path}:certKey={self.pem_path}"
        else:
            irc = f"tcp:{port}:interface={hostname}"
        with self.open_file("chathub.toml", "w") as fd:
            fd.write(
                TEMPLATE_CONFIG.format(
                    directory=self.directory,
                    irc_listener=irc.replace("\\", "\\\\"),
                    http_listeners=http_listeners,
                    before_connect=str(self.test_config.account_registration_before_connect).lower(),
                )
            )
        twistd = os.environ.get("IRCTEST_CHATHUB_TWISTD")
        if twistd:
            command = shlex.split(twistd)
        else:
            command = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
        log = "-" if self.debug_mode else str(self.directory / "chathub.log")
        self.proc = self.execute(
            [
                *command,
                "--nodaemon",
                "--pidfile", str(self.directory / "twistd.pid"),
                "--logfile", log,
                "chathub",
                "--config", str(self.directory / "chathub.toml"),
            ],
            proc_name="chathub",
        )

    def wait_for_services(self) -> None:
        # NickServ is part of the server: nothing more to wait for than the port
        self.wait_for_port()

    def registerUser(
        self,
        case: BaseServerTestCase,
        username: str,
        password: Optional[str] = None,
    ) -> None:
        """Registers ``username`` as an account with NickServ REGISTER."""
        assert password
        client = case.addClient(show_io=False)
        case.sendLine(client, "NICK " + username)
        case.sendLine(client, "USER r e g :user")
        while case.getRegistrationMessage(client).command != "001":
            pass
        case.getMessages(client)
        case.sendLine(client, f"PRIVMSG NickServ :REGISTER {password}")
        msgs = case.getMessages(client)
        assert "900" in {msg.command for msg in msgs}, msgs
        case.sendLine(client, "QUIT")
        case.assertDisconnected(client)


def get_irctest_controller_class() -> Type[ChathubController]:
    return ChathubController
