"""``IrcServer``: what every IRC session of one chathub shares.

Twisted Words splits its IRC server into a service (the realm and its groups, shared)
and a factory (which only builds protocols); chathub does the same. The ``IrcServer``
is built once at start-up (``chathub/app.py``) and handed to the TCP listener's
``IrcFactory`` and to the WebSocket factory, so IRC over TCP and over WebSocket are one
server: one MOTD, one metadata store, one set of read markers, one LUSERS count, one
timer sweep. Sessions read the hub, portal and config through it rather than keeping
their own references (10,000 idle connections are 10,000 sessions).
"""
from __future__ import annotations

import itertools
import weakref
from typing import TYPE_CHECKING, Callable, Iterator, Optional

from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorTime

from chathub.protocols.irc.logins import LoggedLogins
from chathub.protocols.irc.table import METADATA_CHANGED, run_hooks
from chathub.protocols.sendqueue import TurnWrites
from chathub.protocols.sweeper import Sweeper, TimedSession

if TYPE_CHECKING:
    from chathub.config import Config
    from chathub.hub.service import ChatHub


def read_motd(path: str) -> Optional[list[str]]:
    """The lines of the MOTD file at ``path``, or None when it cannot be read (blocking)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().splitlines()
    except OSError:
        return None


class Motd:
    """The message of the day, read when the server is built (start-up, before the reactor
    serves anyone): MOTD never touches the disk on the reactor.

    ``[irc] motd_file`` is relative to ``server.data_dir`` unless absolute; empty means
    none (422). ``reload()`` re-reads it in a thread.
    """

    def __init__(self, config: "Config", lines: Optional[list[str]] = None, read: bool = True) -> None:
        """Read the file now, or (``read=False``) keep ``lines`` until ``reload()``."""
        name = config.irc.motd_file
        self.path: Optional[str] = config.data_path(name) if name else None
        self.lines: Optional[list[str]] = read_motd(self.path) if self.path and read else lines

    def reload(self, reactor=None) -> defer.Deferred:
        """Re-read the file in a thread; fires with the new lines once they are in use."""
        if reactor is None:
            from twisted.internet import reactor
        if self.path is None:
            return defer.succeed(None)

        def swap(lines: Optional[list[str]]) -> Optional[list[str]]:
            self.lines = lines
            return lines

        d = threads.deferToThreadPool(reactor, reactor.getThreadPool(), read_motd, self.path)
        return d.addCallback(swap)


class IrcServer:
    """The state IRC sessions share: hub, portal (logins logged the IRC way), config,
    clock, MOTD, METADATA, the sessions still registering (LUSERS 253),
    the timer sweep, batch references and format keys.

    Built once per chathub and handed to every IRC listener (``IrcFactory``, and the
    WebSocket factory for IRC over WebSocket). Command modules keep their state here
    (``metadata``) and hook into it through the command table
    (``table.hook``), never through module globals.
    """

    def __init__(
        self,
        hub: "ChatHub",
        portal,
        config: "Config",
        clock: Optional[IReactorTime] = None,
    ) -> None:
        """``portal`` is the chathub portal (each connection logs in through
        ``portal.client(its address)``); ``clock`` defaults to the reactor. Reads the MOTD
        file now: build this at start-up."""
        if clock is None:
            from twisted.internet import reactor

            clock = reactor
        self.hub = hub
        self.portal = LoggedLogins(portal)
        self.config = config
        self.clock = clock
        self.server_name: str = config.server.name
        self.motd = Motd(config)
        #: the sessions that have not completed registration (LUSERS 253)
        self.unregistered: "weakref.WeakSet[TimedSession]" = weakref.WeakSet()
        #: registration deadlines and ping checks of every session, once a second
        self.sweeper = Sweeper(clock)
        #: the end of the reactor turn, for what connections over TCP are written while
        #: their reads are handled (``IrcProtocol``)
        self.turn = TurnWrites(clock)
        self._format_keys: dict[frozenset, tuple] = {}
        #: lines command modules render once for every client (the welcome burst's fixed
        #: part, the MOTD): name -> (the config and the MOTD lines it was made from, the
        #: rendering); an entry made from another config or MOTD than the current ones is
        #: stale (a reload, or a MOTD re-read, replaces them), and ``reconfigure`` clears it
        self.renderings: dict[str, tuple[object, object, object]] = {}
        self._batch_ids: dict[str, Iterator[int]] = {}
        hub.metadata.when_changed(self._metadata_changed)

    #: set by the assembly (``chathub.app``): re-read the config file and apply it; fires
    #: with (True, lines saying what changed and what needs a restart) or (False, [why the
    #: file was refused]). None: REHASH re-reads only the MOTD
    rehash: Optional[Callable[[], "defer.Deferred[tuple[bool, list[str]]]"]] = None

    def reconfigure(self, config: "Config") -> "defer.Deferred":
        """Take a reloaded config (sessions read it through this server at once) and re-read
        the MOTD file it names, in a thread; fires once the new MOTD is in use."""
        self.config = config
        self.renderings.clear()
        for session in list(self.sweeper.sessions):
            session.retune_flood(config)  # type: ignore[attr-defined]  # an IrcSession
        # the old lines stay shown until the file is read, in a thread (never here)
        self.motd = Motd(config, self.motd.lines if config.irc.motd_file else None, read=False)
        return self.motd.reload()  # the reactor's threads (``clock`` only tells the time)

    def going_away(self, reason: str) -> None:
        """Tell every IRC session (registered or not, over TCP or WebSocket) ``ERROR :reason``
        and close it: the server is shutting down."""
        for session in list(self.sweeper.sessions):
            session.close(reason)  # type: ignore[attr-defined]  # an IrcSession

    # -- sessions --------------------------------------------------------------------

    def session_opened(self, session: TimedSession) -> None:
        """A connection's session starts: time its registration, count it as unknown."""
        self.sweeper.add(session)
        self.unregistered.add(session)

    def session_registered(self, session: TimedSession) -> None:
        """``session`` completed registration: it is a user now, no longer unknown."""
        self.unregistered.discard(session)

    def session_closed(self, session: TimedSession) -> None:
        """``session``'s connection is gone: nothing to time or count any more."""
        self.sweeper.discard(session)
        self.unregistered.discard(session)

    # -- shared values ---------------------------------------------------------------

    def format_key(self, render_caps: frozenset) -> tuple:
        """The fan-out ``format_key`` of sessions rendering with ``render_caps``: one
        tuple per capability set, shared by the sessions that have it."""
        key = self._format_keys.get(render_caps)
        if key is None:
            key = self._format_keys[render_caps] = ("irc", render_caps)
        return key

    def rendering(self, name: str, make: Callable[[], object]) -> object:
        """What ``make()`` renders from the current config and MOTD, made once per config
        and MOTD: ``name`` tells the renderings apart."""
        lines = self.motd.lines
        kept = self.renderings.get(name)
        if kept is not None and kept[0] is self.config and kept[1] is lines:
            return kept[2]
        made = make()
        self.renderings[name] = (self.config, lines, made)
        return made

    def batch_ref(self, prefix: str) -> str:
        """A new BATCH reference: ``prefix`` (which kind of batch) and a number counted per
        prefix (``L1``, ``L2``, ... for labeled-response)."""
        ids = self._batch_ids.get(prefix)
        if ids is None:
            ids = self._batch_ids[prefix] = itertools.count(1)
        return f"{prefix}{next(ids)}"

    def _metadata_changed(self, thing: object, key: str, value: Optional[str], by: object) -> None:
        run_hooks(METADATA_CHANGED, self, thing, key, value, by)
