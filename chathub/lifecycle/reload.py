"""Live reload: ``SIGHUP`` and IRC ``REHASH`` re-read the whole config file and apply what can
change without dropping anyone.

A reload first prepares everything that can fail (reading and validating the file, parsing new
listeners' endpoints, reading the certificates of TLS listeners), in a thread: those are file
reads, and the reactor thread never waits on a disk. A bad file changes nothing and the report
says why. Then, on the reactor thread, it applies: the hub, the IRC server (MOTD re-read in a
thread, operators), the line and web factories, the connection limits take the new config;
TLS listeners get their certificates again; listeners added start and listeners removed stop
listening (their connections stay). Settings only a restart can change (the storage backend,
the data directory, ...) are named in the report, never silently ignored.

Reloads run one at a time (``Reloader``): a request made while one runs waits for it, and every
request made meanwhile is answered by one more reload that reads the file after they were made,
so an older file is never applied after a newer one.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, Iterator, NamedTuple, Optional, cast

from twisted.internet import defer, threads
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

from chathub.config import Config, ConfigError, load_config
from chathub.protocols.tls import tls_creator_of

if TYPE_CHECKING:
    from chathub.app import ChathubService

log = Logger()

#: settings a running hub takes at once, by section ("*": every setting of it); every other
#: one needs a restart. Flood settings reach open connections too; what a connection is built
#: with (line length, send queue, WebSocket frame sizes) applies to those made after the reload.
LIVE: dict[str, frozenset[str]] = {
    "server": frozenset({"network", "admin_name", "admin_email", "description", "shutdown_timeout"}),
    "listeners": frozenset({"*"}),
    "limits": frozenset({"*"}),
    "line": frozenset({"*"}),
    "irc": frozenset({"*"}),
    "websocket": frozenset({"*"}),
    "history": frozenset({"join_replay", "query_limit"}),
    "logging": frozenset({"access_log", "level"}),
    "metrics": frozenset({"token"}),  # the HTTP site hands it to /metrics
}

LISTENER_KINDS = ("line", "irc", "http")


def changed_settings(old: Config, new: Config) -> Iterator[str]:
    """Dotted names of the settings whose values differ (``irc.motd_file``), in file order."""
    for section in dataclasses.fields(Config):
        if section.name == "source":
            continue
        before, after = getattr(old, section.name), getattr(new, section.name)
        for setting in dataclasses.fields(before):
            if getattr(before, setting.name) != getattr(after, setting.name):
                yield f"{section.name}.{setting.name}"


def keep_settings(old: Config, new: Config, names: list[str]) -> Config:
    """``new`` with the settings ``names`` (dotted) at their values in ``old``: what a running
    hub cannot change stays as it started, everywhere it is read."""
    sections: dict[str, dict[str, Any]] = {}
    for dotted in names:
        section, name = dotted.split(".", 1)
        sections.setdefault(section, {})[name] = getattr(getattr(old, section), name)
    kept = dataclasses.replace(
        new, **{section: dataclasses.replace(getattr(new, section), **values) for section, values in sections.items()}
    )
    kept.validate("")
    return kept


def is_live(dotted: str) -> bool:
    """Whether a running hub can take a new value of the setting ``dotted``."""
    section, name = dotted.split(".", 1)
    live = LIVE.get(section, frozenset())
    return "*" in live or name in live


class Report(NamedTuple):
    """What a reload did: ``ok`` False means nothing changed, and ``lines`` say why."""

    ok: bool
    lines: list[str]


class Request(NamedTuple):
    """What reading the file needs to know of the running hub, taken on the reactor thread so
    the reader touches nothing the reactor changes."""

    old: Config  # the config running now
    overrides: dict[str, dict[str, Any]]  # the command line's settings, applied over the file
    running: frozenset[tuple[str, str]]  # (kind, description) of each listener
    tls: frozenset[tuple[str, str]]  # those of them whose port's certificate can be swapped
    #: parses a listener description (``ChathubService.endpoint_for``): builds the endpoint,
    #: reading a TLS listener's certificate and key files, and touches no reactor state
    endpoint_for: Callable[[str, str], IStreamServerEndpoint]


class Plan(NamedTuple):
    """Everything a reload will apply, prepared (and so checked) before anything changes."""

    config: Config
    applied: list[str]  # settings taken at once
    restart: list[str]  # settings that need a restart
    added: list[tuple[str, str, Any]]  # (kind, description, endpoint) of new listeners
    removed: list[tuple[str, str]]  # (kind, description) of listeners to stop
    certificates: dict[tuple[str, str], Any]  # (kind, description) -> its new certificate options


#: reads the file and prepares a ``Plan`` (``read_plan``); run in a thread
Reader = Callable[[Request], Plan]
#: runs a blocking function in a thread, firing with its result (``deferToThread``)
InThread = Callable[..., "defer.Deferred[Any]"]


def request_of(service: "ChathubService") -> Request:
    """What a reload of ``service`` starts from; on the reactor thread."""
    running = frozenset((listener.kind, listener.description) for listener in service.listeners)
    tls = frozenset(
        (listener.kind, listener.description)
        for listener in service.listeners
        if getattr(listener.port, "tls", None) is not None
    )
    return Request(service.config, dict(service.overrides), running, tls, service.endpoint_for)


def read_plan(request: Request) -> Plan:
    """Read the file the hub started with, apply the command line's overrides again, and
    prepare the change; raise ``ConfigError`` saying why when the file cannot be used.

    Blocking (the file, the certificates): run in a thread."""
    old = request.old
    config = load_config(old.source) if old.source is not None else Config()
    config = config.with_overrides(**request.overrides)
    names = list(changed_settings(old, config))
    applied = [n for n in names if is_live(n)]
    restart = [n for n in names if not is_live(n)]
    config = keep_settings(old, config, restart)
    wanted = [(kind, d) for kind in LISTENER_KINDS for d in getattr(config.listeners, kind)]
    added = [
        (kind, description, request.endpoint_for(kind, description))
        for kind, description in wanted
        if (kind, description) not in request.running
    ]
    removed = [key for key in sorted(request.running) if key not in wanted]
    certificates = {}
    for kind, description in wanted:
        if (kind, description) in request.tls:
            # parsing the description again reads the certificate and key files again
            creator = tls_creator_of(request.endpoint_for(kind, description))
            if creator is not None:
                certificates[kind, description] = creator
    return Plan(config, applied, restart, added, removed, certificates)


def apply_plan(service: "ChathubService", plan: Plan) -> "defer.Deferred[Report]":
    """Apply a prepared ``plan`` on the reactor thread; fires with the ``Report`` (logged
    here too) once the new listeners listen and the MOTD is read."""
    source = service.config.source or "the built-in defaults"
    waits = service.apply_config(plan.config)
    swapped = 0
    for listener in list(service.listeners):
        key = (listener.kind, listener.description)
        swappable = getattr(listener.port, "tls", None)
        if key in plan.certificates and swappable is not None:
            swappable.swap(plan.certificates[key])
            swapped += 1
        elif key in plan.removed:
            service.remove_listener(listener)
    for kind, description, endpoint in plan.added:
        waits.append(service.add_listener(kind, description, endpoint).when_listening())
    lines = [f"{source} re-read"]
    if plan.applied:
        lines.append("applied: " + ", ".join(plan.applied))
    if swapped:
        lines.append(f"certificates re-read for {swapped} TLS listener(s)")
    if plan.restart:
        lines.append("not changed, need a restart: " + ", ".join(plan.restart))
    if not plan.applied and not plan.restart:
        lines.append("no setting changed")

    def listened(results: list) -> Report:
        for ok, value in results:
            if not ok:
                lines.append(f"failed: {value.getErrorMessage()}")
        for kind, description, _ in plan.added:
            listener = service.listener(kind, description)
            if listener is not None and listener.port is None:
                lines.append(f"the {kind} listener {description} could not listen (see the log)")
        for line in lines:
            log.info("config reload: {line}", line=line, event="reload")
        return Report(True, lines)

    return defer.DeferredList(waits, consumeErrors=True).addCallback(listened)


def refused(service: "ChathubService", failure: Failure) -> "Report | Failure":
    """The report of a file that could not be used (nothing changed); other faults pass."""
    if not failure.check(ConfigError, SystemExit):
        return failure
    e = failure.value
    why = str(e.code if isinstance(e, SystemExit) else e)
    source = service.config.source or "the built-in defaults"
    log.error("config reload refused, nothing changed: {why}", why=why, event="reload_failed")
    return Report(False, [f"{source}: nothing changed: {why}"])


class Reloader:
    """Runs the reloads of one hub, one at a time: the file is read in a thread
    (``in_thread(read, request)``), the result applied on the reactor thread.

    A request made while a reload runs waits; all the requests made meanwhile share the one
    reload that starts when it ends, whose read comes after each of them. So two reloads in a
    row apply the file as it was at the second one, never the first's after it, and a burst
    of SIGHUPs costs two reads, not one each."""

    def __init__(
        self, service: "ChathubService", read: Reader = read_plan, in_thread: InThread = threads.deferToThread
    ) -> None:
        self.service = service
        self.read = read
        self.in_thread = in_thread
        self._running = False
        #: the callers waiting for the next reload (None: nobody is)
        self._next: Optional[list[defer.Deferred[Report]]] = None

    def reload(self) -> "defer.Deferred[Report]":
        """Re-read and apply the config file; fires with the ``Report`` of a reload whose
        read started after this call."""
        waiting: defer.Deferred[Report] = defer.Deferred()
        if self._running:
            if self._next is None:
                self._next = []
            self._next.append(waiting)
        else:
            self._run([waiting])
        return waiting

    def _run(self, callers: list[defer.Deferred[Report]]) -> None:
        self._running = True
        service = self.service
        d: defer.Deferred[Any] = defer.maybeDeferred(self.in_thread, self.read, request_of(service))
        d.addCallbacks(lambda plan: apply_plan(service, plan), lambda failure: refused(service, failure))
        d.addBoth(self._done, callers)

    def _done(self, result: object, callers: list[defer.Deferred[Report]]) -> None:
        self._running = False
        if self._next is not None:
            waiting, self._next = self._next, None
            self._run(waiting)
        for caller in callers:
            if isinstance(result, Failure):
                caller.errback(result)
            else:
                caller.callback(cast(Report, result))
