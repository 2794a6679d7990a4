"""Twisted Words, the IRC server that ships with Twisted, as the benchmark's reference.

Run with ``twistd -n -y bench/twisted_words.tac``.  Environment:

- ``BENCH_TW_PORT``: TCP port to listen on (127.0.0.1 only), default 6667;
- ``BENCH_TW_BACKLOG``: listen backlog, default 1024 (the runner gives chathub the same).

Any nick gets in: the checker accepts every name/password pair, users are
created on login and channels on JOIN.  Twisted Words' IRC front end only
logs a user in after a password (``PASS`` before ``NICK``, or a PRIVMSG to
NickServ), so clients must send ``PASS`` with any value; the load generator
does that when given ``--irc-pass``.  Twisted Words also answers ``PING x``
with ``PONG <servername>``, without the token; the generator counts any PONG.
"""
import os

from zope.interface import implementer

from twisted.application import service, strports
from twisted.cred import checkers, credentials, portal
from twisted.internet import defer
from twisted.words import service as words


@implementer(checkers.ICredentialsChecker)
class AnyoneChecker:
    """Lets every nick in, whatever the password: the benchmark measures the chat path."""

    credentialInterfaces = (credentials.IUsernamePassword,)

    def requestAvatarId(self, creds):
        return defer.succeed(creds.username)


port = int(os.environ.get("BENCH_TW_PORT", "6667"))
backlog = int(os.environ.get("BENCH_TW_BACKLOG", "1024"))

realm = words.InMemoryWordsRealm("twisted.words.bench")
realm.createGroupOnRequest = True
realm.createUserOnRequest = True
chat_portal = portal.Portal(realm, [AnyoneChecker()])

application = service.Application("twisted-words-bench")
strports.service(
    f"tcp:{port}:interface=127.0.0.1:backlog={backlog}",
    words.IRCFactory(realm, chat_portal),
).setServiceParent(application)
