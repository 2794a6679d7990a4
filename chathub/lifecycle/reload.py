"""Live reload: ``SIGHUP`` and IRC ``REHASH`` re-read the whole config file and apply what can
change without dropping anyone.

A reload first prepares everything that can fail (reading and validating the file, parsing new
listeners' endpoints, reading the certificates of TLS listeners), so a bad file changes
nothing and the report says why. Then it applies: the hub, the IRC server (MOTD re-read in a
thread, operators), the line and web factories, the connection limits take the new config;
TLS listeners get their certificates again; listeners added start and listeners removed stop
listening (their connections stay). Settings only a restart can change (the storage backend,
the data directory, ...) are named in the report, never silently ignored.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Iterator, NamedTuple

from twisted.internet import defer
from twisted.logger import Logger

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


class Plan(NamedTuple):
    """Everything a reload will apply, prepared (and so checked) before anything changes."""

    config: Config
    applied: list[str]  # settings taken at once
    restart: list[str]  # settings that need a restart
    added: list[tuple[str, str, Any]]  # (kind, description, endpoint) of new listeners
    removed: list[Any]  # Listener services to stop
    certificates: list[tuple[Any, Any]]  # (running port's SwappableTLS, new certificate options)


def prepare(service: "ChathubService") -> Plan:
    """Read the file the hub started with, apply the command line's overrides again, and
    prepare the change; raise ``ConfigError`` saying why when the file cannot be used."""
    old = service.config
    config = load_config(old.source) if old.source is not None else Config()
    config = config.with_overrides(**service.overrides)
    names = list(changed_settings(old, config))
    applied = [n for n in names if is_live(n)]
    restart = [n for n in names if not is_live(n)]
    config = keep_settings(old, config, restart)
    running = {(listener.kind, listener.description): listener for listener in service.listeners}
    wanted = [(kind, d) for kind in LISTENER_KINDS for d in getattr(config.listeners, kind)]
    added = []
    for kind, description in wanted:
        if (kind, description) not in running:
            added.append((kind, description, service.endpoint_for(kind, description)))
    removed = [listener for key, listener in running.items() if key not in wanted]
    certificates = []
    for (kind, description), listener in running.items():
        swappable = getattr(listener.port, "tls", None)
        if swappable is None or (kind, description) not in wanted:
            continue
        # parsing the description again reads the certificate and key files again
        creator = tls_creator_of(service.endpoint_for(kind, description))
        if creator is not None:
            certificates.append((swappable, creator))
    return Plan(config, applied, restart, added, removed, certificates)


def reload_config(service: "ChathubService") -> "defer.Deferred[Report]":
    """Re-read and apply the config file; fires with the ``Report`` (logged here too)."""
    source = service.config.source or "the built-in defaults"
    try:
        plan = prepare(service)
    except (ConfigError, SystemExit) as e:
        why = str(e.code if isinstance(e, SystemExit) else e)
        log.error("config reload refused, nothing changed: {why}", why=why, event="reload_failed")
        return defer.succeed(Report(False, [f"{source}: nothing changed: {why}"]))
    waits = service.apply_config(plan.config)
    for swappable, creator in plan.certificates:
        swappable.swap(creator)
    for listener in plan.removed:
        service.remove_listener(listener)
    for kind, description, endpoint in plan.added:
        waits.append(service.add_listener(kind, description, endpoint).when_listening())
    lines = [f"{source} re-read"]
    if plan.applied:
        lines.append("applied: " + ", ".join(plan.applied))
    if plan.certificates:
        lines.append(f"certificates re-read for {len(plan.certificates)} TLS listener(s)")
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
