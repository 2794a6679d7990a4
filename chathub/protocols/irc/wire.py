"""IRC wire format: one line in, one ``Message`` out, and back, with the protocol's limits.

Parsing uses irctokens' ``tokenise`` on one complete, already-decoded line (never its
``StatefulDecoder``, whose buffer is unbounded). Serialising is ours, because it must
enforce the limits irctokens ignores: 512 bytes for the part after the tags (CRLF
included) and 8191 bytes for the tags (``@`` and the space included).
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import irctokens

from chathub.text import scrub

#: bytes allowed for source, command and parameters, CRLF included (RFC 1459)
MAX_BODY = 512
#: bytes allowed for the tag section, leading ``@`` and trailing space included (IRCv3)
MAX_TAGS = 8191
#: bytes of client-only tag data a client may send (IRCv3 message-tags)
MAX_CLIENT_TAGS = 4094
#: the longest line we read before giving up on it
MAX_LINE = MAX_BODY + MAX_TAGS

#: commands with a free-text parameter: it is always written as a trailing (``:text``),
#: as most servers do, so naive clients that look for " :" find it
TEXT_COMMANDS = {
    "PRIVMSG": 1, "NOTICE": 1, "PART": 1, "KICK": 2, "TOPIC": 1,
    "QUIT": 0, "AWAY": 0, "ERROR": 0, "WALLOPS": 0, "SETNAME": 0, "KILL": 1,
}  # command -> position of its text parameter


class LineError(Exception):
    """A line we cannot take: ``reason`` is ``too_long``, ``invalid_utf8`` or ``empty``."""

    def __init__(self, reason: str, command: str = "*", tags: Optional[dict] = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.command = command
        self.tags = tags or {}


class Message:
    """One IRC message: tags, source, command and parameters."""

    __slots__ = ("tags", "source", "command", "params")

    def __init__(
        self,
        command: str,
        params: Sequence[str] = (),
        source: Optional[str] = None,
        tags: Optional[Mapping[str, str]] = None,
    ) -> None:
        self.command = command
        self.params = list(params)
        self.source = source
        self.tags = dict(tags) if tags else {}

    def __repr__(self) -> str:
        return f"Message({self.command!r}, {self.params!r}, source={self.source!r}, tags={self.tags!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Message) and (
            self.command,
            self.params,
            self.source,
            self.tags,
        ) == (other.command, other.params, other.source, other.tags)

    def with_tags(self, **extra: str) -> "Message":
        """A copy with more tags (used for ``label`` and ``batch``)."""
        tags = dict(self.tags)
        tags.update(extra)
        return Message(self.command, self.params, self.source, tags)

    def to_bytes(self) -> bytes:
        """Serialise with CRLF, cutting the last parameter to stay inside the limits."""
        return serialise(self.tags, self.source, self.command, self.params)


class Prerendered(Message):
    """A message whose wire form was made already: ``to_bytes`` returns it. A copy with
    more tags (``with_tags``: a label, a batch) is a plain ``Message``, serialised anew."""

    __slots__ = ("wire",)

    def __init__(self, command: str, params: Sequence[str], source: Optional[str], wire: bytes) -> None:
        super().__init__(command, params, source)
        self.wire = wire

    def to_bytes(self) -> bytes:
        """The wire form made when the message was (CRLF included)."""
        return self.wire


#: stands for the nick in a ``NickTemplate``'s lines until the nick is known: one byte,
#: which nothing before a numeric's first parameter (``:server 123 ``) contains
_NICK_SLOT = "\x00"


class NickTemplate:
    """Server lines that differ between clients only in their first parameter, the nick
    they are addressed to (numerics), serialised once: each client's copy is the bytes
    before the nick, the nick, and the bytes after it, exactly what ``serialise`` makes
    of it. A line that is cut to fit for some nick (a long MOTD line with a long nick) is
    serialised for that nick as usual.
    """

    __slots__ = ("_lines", "_source")

    def __init__(self, source: str, lines: Sequence[tuple[str, Sequence[str]]]) -> None:
        """``lines``: (command, parameters after the nick) of each line, from ``source``."""
        self._lines: list[tuple[str, tuple[str, ...], bytes, bytes]] = []
        for command, rest in lines:
            wire = serialise(None, source, command, [_NICK_SLOT, *rest])
            head, _, tail = wire.partition(_NICK_SLOT.encode("ascii"))
            self._lines.append((command, tuple(rest), head, tail))
        self._source = source

    def for_nick(self, nick: str) -> list[Message]:
        """The lines addressed to ``nick``."""
        source = self._source
        try:
            name = nick.encode("utf-8")
        except UnicodeEncodeError:  # serialise scrubs it
            return [Message(command, (nick, *rest), source) for command, rest, _, _ in self._lines]
        out: list[Message] = []
        for command, rest, head, tail in self._lines:
            if len(head) + len(name) + len(tail) <= MAX_BODY:
                out.append(Prerendered(command, (nick, *rest), source, head + name + tail))
            else:  # cut to fit: where depends on the nick's length
                out.append(Message(command, (nick, *rest), source))
        return out


class SlotTemplate:
    """Server lines serialised once with slots for what differs between clients (the nick,
    a mask, counts): a client's copy of all of them is one ``bytes % values``, exactly what
    ``serialise`` makes of each line with the values in place.

    A slot is written ``slot("name")`` inside a parameter. Its value (bytes) must not be
    empty, hold a space or, filling a whole parameter, start with ``:`` (nicks, masks,
    hosts and numbers never do): those would change how ``serialise`` writes the line.
    ``fill`` answers None when the values would make a line too long, so the caller makes
    the lines one by one (``serialise`` cuts them).
    """

    __slots__ = ("_format", "_slack", "_room")

    def __init__(self, source: str, lines: Sequence[tuple[str, Sequence[str]]]) -> None:
        """``lines``: (command, parameters) of each line, from ``source``."""
        parts: list[bytes] = []
        room: dict[tuple[bytes, ...], int] = {}  # the slots of a line -> bytes left for them
        for command, params in lines:
            wire = serialise(None, source, command, params)
            pieces = wire.split(_SLOT_MARK)  # text, name, text, name, ..., text
            names = tuple(pieces[1::2])
            left = MAX_BODY - (sum(map(len, pieces[0::2])))  # CRLF counted in both
            if len(wire) >= MAX_BODY or len(pieces) % 2 == 0 or not all(
                name.replace(b"_", b"").isalnum() for name in names
            ):
                # cut (a slot may be gone, the text short), or a NUL of the text's own
                # (a MOTD's): never filled, made line by line
                left = -1
            room[names] = min(left, room.get(names, left))
            for i, piece in enumerate(pieces):
                parts.append(piece.replace(b"%", b"%%") if i % 2 == 0 else b"%(" + piece + b")s")
        self._format = b"".join(parts)
        self._room = list(room.items())
        # values no longer than this in all fit on every line (each line holds a slot once)
        self._slack = min(room.values(), default=MAX_BODY)

    def fill(self, values: Mapping[bytes, bytes]) -> Optional[bytes]:
        """The lines with ``values`` (``{name: value}``, every slot's) in place, or None
        when one would be too long."""
        try:
            if sum(map(len, values.values())) > self._slack:
                # a long line (ISUPPORT, the MOTD's) holds the nick alone: line by line
                for names, left in self._room:
                    if sum(len(values[name]) for name in names) > left:
                        return None
            return self._format % values
        except KeyError:  # a NUL-wrapped word of the text's own, taken for a slot
            return None


#: what marks a slot's name in a ``SlotTemplate``'s parameters: NUL, which no IRC line holds
_SLOT_MARK = b"\x00"


def slot(name: str) -> str:
    """A ``SlotTemplate`` slot, to write inside a parameter."""
    return f"\x00{name}\x00"


def escape_tag_value(value: str) -> str:
    """IRCv3 tag value escaping."""
    # chained replaces, backslash first: each is one C scan (0.27 us for a 24-character
    # value, where str.translate with a mapping looked each character up: 1.45 us)
    value = value.replace("\\", "\\\\").replace(";", "\\:").replace(" ", "\\s")
    return value.replace("\r", "\\r").replace("\n", "\\n")


def format_tags(tags: Mapping[str, str]) -> str:
    """``a=b;c`` (no leading ``@``); empty values are written as bare keys."""
    return ";".join(f"{k}={escape_tag_value(v)}" if v else k for k, v in tags.items())


def _cut_utf8(data: bytes, size: int) -> bytes:
    """``data`` cut to at most ``size`` bytes, never inside a UTF-8 sequence."""
    if len(data) <= size:
        return data
    data = data[:size]
    return data.decode("utf-8", "ignore").encode("utf-8")


def serialise(
    tags: Optional[Mapping[str, str]],
    source: Optional[str],
    command: str,
    params: Sequence[str],
) -> bytes:
    """One wire line (with CRLF) within the IRC limits.

    Text UTF-8 cannot carry (a lone surrogate in an event stored before such text was
    refused) is written as U+FFFD: a damaged row costs a character, never the line, the
    page of history it is in, or the connection it was going to.
    """
    try:
        head = []
        if source:
            head.append(":" + source)
        head.append(command)
        rest = list(params)  # ``params`` stays whole for the except clause
        last: Optional[str] = None
        if rest:
            last = rest.pop()
            head.extend(rest)
        body = " ".join(head).encode("utf-8")
        if last is not None:
            trailing = last.encode("utf-8")
            if (
                not last
                or " " in last
                or last.startswith(":")
                or TEXT_COMMANDS.get(command) == len(rest)
            ):
                sep = b" :"
            else:
                sep = b" "
            if len(body) + len(sep) + len(trailing) > MAX_BODY - 2:
                sep = b" :"
                trailing = _cut_utf8(trailing, max(MAX_BODY - 2 - len(body) - len(sep), 0))
            body += sep + trailing
        body = body[: MAX_BODY - 2]
        if tags:
            tag_bytes = b"@" + format_tags(tags).encode("utf-8")
            if len(tag_bytes) + 1 > MAX_TAGS:
                # drop tags from the end until they fit: a message without a tag beats none
                kept: dict[str, str] = {}
                for k, v in tags.items():
                    trial = dict(kept, **{k: v})
                    if len(format_tags(trial).encode("utf-8")) + 2 > MAX_TAGS:
                        break
                    kept = trial
                tag_bytes = b"@" + format_tags(kept).encode("utf-8")
            return tag_bytes + b" " + body + b"\r\n"
        return body + b"\r\n"
    except UnicodeEncodeError:
        # only reached for such text: scrubbed once, the second pass cannot fail
        return serialise(
            {scrub(k): scrub(v) if v else v for k, v in tags.items()} if tags else tags,
            scrub(source) if source else source,
            scrub(command),
            [scrub(p) for p in params],
        )


def plain_privmsg(line: bytes) -> Optional[tuple[str, str]]:
    """(target, text) when ``line`` is ``PRIVMSG #target :text`` and nothing more: no tags,
    no source, one target, a non-empty text, within the limits, valid UTF-8, no byte that
    ``irctokens`` cuts a line at. ``parse(line)`` is then exactly
    ``Message("PRIVMSG", [target, text])``. None for any other line: parse it.

    The commonest line of a busy server, taken apart with three searches instead of a
    decode of the whole line, irctokens' partition and split, and a ``Message``."""
    if not line.startswith(b"PRIVMSG #") or len(line) + 2 > MAX_BODY:
        return None
    colon = line.find(b" :", 9)
    if colon < 0 or colon + 2 == len(line) or b"\x00" in line or b"\r" in line or b"\n" in line:
        return None
    target = line[8:colon]
    if b" " in target or b"," in target:
        return None
    try:
        return target.decode("utf-8"), line[colon + 2 :].decode("utf-8")
    except UnicodeDecodeError:
        return None


def parse(line: bytes) -> Message:
    """Decode and tokenise one line (without its line ending); raise ``LineError``.

    The tag part and the body are checked against their own limits, and the body must be
    UTF-8 (we advertise UTF8ONLY); an over-long or undecodable line still yields its
    command and tags where possible, so the error reply can carry the ``label``.
    """
    # the commonest line, a command without tags or source (NICK, USER, PING, JOIN ...):
    # irctokens' own steps for it, without its checks for what it cannot hold (2.3 -> 1 us)
    if line and line[0] not in _NOT_PLAIN and len(line) + 2 <= MAX_BODY:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            return parse_general(line)
        if "\x00" not in text and "\r" not in text and "\n" not in text:
            head, sep, trailing = text.partition(" :")
            params = [p for p in head.split(" ") if p]
            if params:
                command = params.pop(0).upper()
                if sep:
                    params.append(trailing)
                return Message(command, params)
    return parse_general(line)


#: first bytes a line without tags or source cannot start with (``parse``)
_NOT_PLAIN = frozenset(b"@: ")


def parse_general(line: bytes) -> Message:
    """``parse`` for any line (tags, a source, bytes irctokens cuts the line at)."""
    tag_part = b""
    body = line
    if line.startswith(b"@"):
        tag_part, _, body = line.partition(b" ")
    body = body.lstrip(b" ")
    if not body.strip(b" "):
        raise LineError("empty")
    tags: dict[str, str] = {}
    if tag_part:
        try:
            tags = dict(irctokens.tokenise(tag_part.decode("utf-8") + " X").tags or {})
        except (UnicodeDecodeError, ValueError, IndexError):
            tags = {}
    command = body.split(b" ", 1)[0].lstrip(b":")
    if body.startswith(b":"):
        parts = body.split(b" ", 2)
        command = parts[1] if len(parts) > 1 else b""
    command_text = command.decode("utf-8", "replace").upper() or "*"
    # a client's tags may take 4096 bytes with '@' and the space (IRCv3 message-tags)
    if len(tag_part) + 1 > MAX_CLIENT_TAGS + 2 or len(body) + 2 > MAX_BODY:
        raise LineError("too_long", command_text, tags)
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise LineError("invalid_utf8", command_text, tags) from None
    try:
        tokens = irctokens.tokenise(text)
    except (ValueError, IndexError):
        raise LineError("empty") from None
    return Message(tokens.command, tokens.params, tokens.source, tokens.tags or {})

