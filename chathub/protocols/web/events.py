"""Hub events as ``chathub.v1`` JSON objects (see docs/protocol.md, "Events").

Pure functions: the same event always gives the same JSON text, which is what lets
fan-out encode it once for every JSON recipient.
"""
from __future__ import annotations

import json
from typing import Any, Optional

from chathub.events import Event, Kind, Source, iso_time
from chathub.text import encode_utf8

#: the client-only tag IRCv3 uses for typing notices
TYPING_TAG = "+typing"
TYPING_STATES = ("active", "paused", "done")

#: one encoder for every message (``json.dumps`` with options builds a new one per call)
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def source_json(source: Source) -> dict[str, Any]:
    """Who did it: nick, account (or null) and the protocol they use."""
    return {"nick": source.nick, "account": source.account, "protocol": source.protocol}


def event_json(event: Event) -> Optional[dict[str, Any]]:
    """The JSON object for ``event``, or None for kinds web clients are not told about."""
    kind = event.kind
    out: dict[str, Any] = {
        "type": kind,
        "id": event.id,
        "time": iso_time(event.time),
        "from": source_json(event.source),
    }
    if event.target:
        out["target"] = event.target
    data = event.data
    if kind in Kind.TEXT_KINDS:
        out["text"] = event.text
        if event.tags:
            out["tags"] = dict(event.tags)
        if data.get("error"):
            out["error"] = data["error"]
    elif kind == Kind.TAGMSG:
        tags = dict(event.tags)
        state = tags.pop(TYPING_TAG, None)
        if state is not None:
            out["type"] = "typing"
            out["state"] = state if state in TYPING_STATES else "active"
            if tags:
                out["tags"] = tags
        else:
            out["tags"] = tags
    elif kind == Kind.JOIN:
        out["room"] = out.pop("target")
    elif kind in (Kind.PART, Kind.QUIT):
        if "target" in out:
            out["room"] = out.pop("target")
        out["reason"] = event.text
    elif kind == Kind.KICK:
        out["room"] = out.pop("target")
        out["nick"] = data.get("nick", "")
        out["reason"] = event.text
    elif kind == Kind.TOPIC:
        out["room"] = out.pop("target")
        out["text"] = event.text
    elif kind == Kind.NICK:
        out["nick"] = data.get("new", "")
    elif kind == Kind.AWAY:
        out["presence"] = "away" if event.text else "online"
        out["text"] = event.text
    elif kind == Kind.MODE:
        out["room"] = out.pop("target", "")
        out["changes"] = [[c, a] for c, a in data.get("changes", [])]
    elif kind == Kind.RENAME:
        out["room"] = out.pop("target", "")
        out["new"] = data.get("new", "")
        out["reason"] = event.text
    elif kind == Kind.INVITE:
        out["room"] = out.pop("target", "")
        out["nick"] = data.get("nick", "")
    elif kind == Kind.PRESENCE:
        out["nick"] = out.pop("target", event.source.nick)
        out["presence"] = data.get("state", "online")
    elif kind == Kind.ACCOUNT:
        out["account"] = data.get("account")
    elif kind == Kind.SETNAME:
        out["realname"] = event.text
    else:
        # chghost and anything newer: nothing a web client shows
        return None
    return out


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON, the form every chathub.v1 message is sent in.

    Never raises on a lone surrogate in a string (an event stored before such text was
    refused): it is sent as U+FFFD, so one damaged row cannot stop a page of history.
    """
    return encode_utf8(_JSON.encode(obj))
