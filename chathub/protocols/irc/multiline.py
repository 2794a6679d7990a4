"""Messages longer than one IRC line, both ways (IRCv3 ``draft/multiline``).

The hub keeps a message whole: any length up to ``[limits] message_bytes``, with line
breaks (``\\n``) up to ``message_lines`` lines. IRC has 512 bytes a line, so:

- out (``text_messages``): each line of the text is cut into pieces that fit the line
  limit with the sender's prefix and the target (at the last space that fits, the space
  kept at the end of the piece, as the specification recommends; else at a character
  boundary, never inside a UTF-8 sequence). A client with ``draft/multiline`` (and
  ``batch``) gets one ``draft/multiline`` batch (a piece that continues the line before
  it carries ``draft/multiline-concat``); any other client gets the pieces as plain
  PRIVMSGs, without blank lines, the ``msgid`` on the first one only. A message from an
  IRC client's batch also carries where its sender broke lines without a line break
  (``SOFT_BREAKS``), and is cut there too, so IRC recipients get the lines as sent. ACTION and NOTICE
  are always sent as plain lines: the batch carries PRIVMSGs only. What is built
  depends only on the event and the capability set, so fan-out builds it once per
  ``format_key``, not per recipient.
- in (``BATCH +ref draft/multiline <target>`` ... ``BATCH -ref``): the PRIVMSGs of a
  client's batch are joined (with ``\\n``, or nothing after ``draft/multiline-concat``)
  and sent to the hub as one message once the batch closes. A session holds at most
  one open batch, bounded by ``max-bytes`` and ``max-lines``; breaking a limit is
  answered with ``FAIL BATCH MULTILINE_*`` and the batch is dropped whole.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from chathub.events import Event, Kind
from chathub.protocols.irc import caps as C
from chathub.protocols.irc.wire import MAX_BODY, Message
from chathub.text import encode_utf8

if TYPE_CHECKING:
    from chathub.config.core import LimitsConfig

#: the tag that joins a line to the one before it without a line break
CONCAT = "draft/multiline-concat"
#: the batch type
BATCH_TYPE = "draft/multiline"
#: the event data key of a message from a multiline batch: the offsets (characters into
#: the text) where the sender's client broke a line without a line break
#: (``draft/multiline-concat``), so IRC recipients get the lines it was sent as
SOFT_BREAKS = "soft_breaks"
#: the fewest bytes a piece may hold: one UTF-8 character of any length always fits
MIN_WIDTH = 4
ACTION_WRAP = len("\x01ACTION \x01")


def cap_value(limits: "LimitsConfig") -> str:
    """The ``draft/multiline`` capability value: the hub's message limits."""
    return f"max-bytes={limits.message_bytes},max-lines={limits.message_lines}"


def split_utf8(text: str, width: int) -> list[str]:
    """``text`` cut into pieces of at most ``width`` UTF-8 bytes whose concatenation is
    ``text`` (surrogates, which UTF-8 cannot carry, as U+FFFD).

    Each cut is after the last space that fits (the space ends the piece, so pieces
    joined without a separator read as the text, and a client showing them as separate
    lines shows no leading space); a piece without a space is cut at the last character
    boundary that fits. Linear in the text: each byte is looked at a bounded number of
    times, no regular expression, no recursion.
    """
    width = max(width, MIN_WIDTH)
    data = encode_utf8(text)
    if len(data) <= width:
        return [data.decode("utf-8")] if data else []
    pieces: list[str] = []
    start = 0
    end_of_data = len(data)
    while end_of_data - start > width:
        limit = start + width
        space = data.rfind(b" ", start + 1, limit)
        if space >= 0:
            end = space + 1  # ASCII: the byte after it begins a character
        else:
            end = limit
            while data[end] & 0xC0 == 0x80:  # a continuation byte: not a boundary
                end -= 1
        pieces.append(data[start:end].decode("utf-8"))
        start = end
    pieces.append(data[start:].decode("utf-8"))
    return pieces


def text_lines(text: str) -> list[str]:
    """The lines of a message (``\\r\\n``, ``\\r`` and ``\\n`` all break a line)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.split("\n")


def _sent_lines(text: str, soft_breaks: object) -> list[tuple[str, bool]]:
    """The lines of ``text`` as its sender sent them: each line of the text, cut again at
    the ``soft_breaks`` offsets inside it (``True``: joined to the line before without a
    line break). Offsets out of order, outside the text or at a line's edge are ignored:
    the text arrives whole either way. Linear in the text and the offsets."""
    cuts = [c for c in soft_breaks if isinstance(c, int)] if isinstance(soft_breaks, list) else []
    out: list[tuple[str, bool]] = []
    pos = 0  # where the current line starts in the text
    i = 0
    for line in text_lines(text):
        end = pos + len(line)
        start, continued = pos, False
        while i < len(cuts) and cuts[i] < end:
            if cuts[i] > start:
                out.append((line[start - pos : cuts[i] - pos], continued))
                start, continued = cuts[i], True
            i += 1
        out.append((line[start - pos :], continued))
        pos = end + 1
    return out


def line_room(command: str, source: str, target: str, extra: int) -> int:
    """Bytes of text one line can carry: 512 less CRLF, ``:source COMMAND target :``."""
    head = len(source.encode("utf-8", "replace")) + len(target.encode("utf-8", "replace"))
    return MAX_BODY - 2 - (1 + head + 1 + len(command) + 1 + 2) - extra


def text_messages(
    event: Event, caps: frozenset, source: str, tags: dict[str, str], target: str
) -> list[Message]:
    """The IRC lines showing a message, action or notice (see the module docstring)."""
    kind = event.kind
    command = "NOTICE" if kind == Kind.NOTICE else "PRIVMSG"
    text = event.text
    action = kind == Kind.ACTION
    width = line_room(command, source, target, ACTION_WRAP if action else 0)
    soft_breaks = event.data.get(SOFT_BREAKS) if event.data else None
    if (
        "\n" not in text and "\r" not in text and not soft_breaks
        and (len(text) * 4 <= width or len(encode_utf8(text)) <= width)
    ):
        # the common case: one line as it always was
        return [Message(command, [target, f"\x01ACTION {text}\x01" if action else text], source, tags)]
    # each line of the text and the pieces it is cut into; ``True`` marks a continuation
    pieces: list[tuple[str, bool]] = []
    for line, continued in _sent_lines(text, soft_breaks):
        parts = split_utf8(line, width)
        if not parts:
            pieces.append(("", False))
            continue
        pieces.append((parts[0], continued))
        pieces.extend((part, True) for part in parts[1:])
    if kind == Kind.MESSAGE and C.MULTILINE in caps:
        return _batch(event, pieces, source, tags, target)
    later = {k: v for k, v in tags.items() if k != "msgid"}  # msgid on the first line only
    out: list[Message] = []
    for part, _continued in pieces:
        if not part.strip(" "):
            continue  # never a blank line to a client without the capability
        body = f"\x01ACTION {part}\x01" if action else part
        out.append(Message(command, [target, body], source, later if out else tags))
    return out


def _batch(event: Event, pieces: list[tuple[str, bool]], source: str, tags: dict[str, str],
           target: str) -> list[Message]:
    # the reference only has to differ from the client's other open batches: a multiline
    # batch is written whole, so the event's id (unique, and the same for every recipient
    # of these shared bytes) serves
    ref = "m" + event.id
    out = [Message("BATCH", [f"+{ref}", BATCH_TYPE, target], source, tags)]
    inner = {"batch": ref}
    concat = {"batch": ref, CONCAT: ""}
    for part, continued in pieces:
        out.append(Message("PRIVMSG", [target, part], source, concat if continued else inner))
    out.append(Message("BATCH", [f"-{ref}"], source))
    return out


def is_multiline_batch(messages: list[Message]) -> bool:
    """True when ``messages`` are exactly one ``draft/multiline`` batch (an echo): the
    label of labeled-response goes on its opening line, not around it."""
    first = messages[0]
    return (
        len(messages) > 2
        and first.command == "BATCH"
        and first.params[1:2] == [BATCH_TYPE]
        and messages[-1].command == "BATCH"
        and messages[-1].params[:1] == ["-" + first.params[0][1:]]
    )


class ClientBatch:
    """A ``draft/multiline`` batch a client has opened and not yet closed."""

    __slots__ = ("ref", "target", "tags", "parts", "size", "length", "lines", "label", "failed", "soft_breaks")

    def __init__(self, ref: str, target: str, tags: dict[str, str], label: Optional[str]) -> None:
        self.ref = ref
        self.target = target
        self.tags = tags  # the client-only tags, given on the BATCH line
        self.parts: list[str] = []
        self.size = 0  # bytes of the joined text so far
        self.length = 0  # characters of the joined text so far
        self.soft_breaks: list[int] = []  # where a line joined the one before it without a break
        self.lines = 0
        self.label = label
        self.failed = False  # a limit was broken: the rest is read and dropped

    def add(self, text: str, concat: bool) -> None:
        """One more PRIVMSG's text (``concat``: no line break before it)."""
        if self.parts and not concat:
            self.parts.append("\n")
            self.size += 1
            self.length += 1
            self.lines += 1
        elif not self.parts:
            self.lines = 1
        elif text:
            self.soft_breaks.append(self.length)
        self.parts.append(text)
        self.size += len(text.encode("utf-8"))
        self.length += len(text)

    def text(self) -> str:
        """The joined message."""
        return "".join(self.parts)


#: flood penalty of one PRIVMSG inside a client's batch: the batch is one message, and
#: ``max-lines`` bounds how many such lines it can hold
BATCHED_LINE_PENALTY = 0.1


def take_batched(session, message: Message, rb, limits: "LimitsConfig") -> None:
    """A line carrying a ``batch`` tag: one more line of the client's open batch, or an
    error (answered with ``FAIL BATCH ...``; a broken batch is dropped whole)."""
    batch: Optional[ClientBatch] = session.client_batch
    ref = message.tags.get("batch", "")
    if batch is None or batch.ref != ref:
        rb.fail("BATCH", "MULTILINE_INVALID", "No open multiline batch with that reference")
        return
    if batch.failed:
        return  # already answered: the rest of the batch is read and dropped
    command = message.command.upper()
    if command != "PRIVMSG" or len(message.params) < 2:
        _broken(batch, rb, "MULTILINE_INVALID", "A multiline batch holds only PRIVMSG lines with text")
        return
    target = message.params[0]
    if target != batch.target:
        _broken(batch, rb, "MULTILINE_INVALID_TARGET", batch.target, target, "Invalid multiline target")
        return
    text = message.params[1]
    concat = CONCAT in message.tags
    if concat and not text:
        _broken(batch, rb, "MULTILINE_INVALID", "A blank line cannot be concatenated")
        return
    batch.add(text, concat)
    if batch.size > limits.message_bytes:
        _broken(batch, rb, "MULTILINE_MAX_BYTES", str(limits.message_bytes),
                f"Multiline batch max-bytes exceeded (at most {limits.message_bytes} bytes)")
    elif batch.lines > limits.message_lines:
        _broken(batch, rb, "MULTILINE_MAX_LINES", str(limits.message_lines),
                f"Multiline batch max-lines exceeded (at most {limits.message_lines} lines)")


def _broken(batch: ClientBatch, rb, code: str, *context_and_text: str) -> None:
    batch.failed = True
    batch.parts = []  # nothing more is kept for a batch that will not be sent
    if batch.label is not None and rb.label is None:
        rb.label = batch.label
    rb.fail("BATCH", code, *context_and_text)
