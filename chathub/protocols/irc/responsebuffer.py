"""The replies to one command, held until the command is done (after Ergo's
``irc/responsebuffer.go``), so that labeled-response can apply its label once:
no reply becomes ``ACK``, one line carries the label, several go in a
``labeled-response`` batch."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable, Optional, Protocol, Union, cast

from chathub.protocols.irc import caps as C
from chathub.protocols.irc.multiline import is_multiline_batch
from chathub.protocols.irc.wire import Message

if TYPE_CHECKING:
    from chathub.protocols.irc.server import IrcServer

#: a reply line, or a maker of lines filled in when the buffer is flushed (see ``later``)
Reply = Union[Message, Callable[[], list[Message]]]


class Replying(Protocol):
    """What a ``ResponseBuffer`` writes to: an ``IrcSession``."""

    server: "IrcServer"
    caps: frozenset[str]

    @property
    def server_name(self) -> str:
        """The source of server lines."""

    def numeric(self, code: str, *params: str) -> Message:
        """A numeric reply to this client."""

    def write_messages(self, messages: Iterable[Message]) -> None:
        """Send lines to this client."""


class ResponseBuffer:
    """The replies to one command, sent together so the ``label`` can be applied.

    With labeled-response, an empty reply becomes ``ACK``, one line carries the label,
    and several lines are wrapped in a ``labeled-response`` batch (when the client has
    ``batch``).
    """

    __slots__ = ("session", "label", "messages", "_after", "at_once")

    def __init__(self, session: Replying, label: Optional[str]) -> None:
        self.session = session
        self.label = label
        self.messages: list[Reply] = []
        self._after: Optional[list[Callable[[], object]]] = None
        #: written as soon as the command is done, not after what the hub holds: nothing
        #: it holds can be for this client yet (a new user's welcome; ``IrcSession._flush``)
        self.at_once = False

    def after_flush(self, fn: Callable[[], object]) -> None:
        """Call ``fn()`` once the buffer was flushed, right after its lines were written."""
        if self._after is None:
            self._after = []
        self._after.append(fn)

    def later(self, make: Callable[[], list[Message]]) -> None:
        """Add the lines ``make()`` returns when the buffer is flushed (once the hub has
        delivered, or refused, what the command caused): an echo, or the error instead."""
        self.messages.append(make)

    def add(self, message: "Message | list[Message] | None") -> None:
        """Add a reply line, several, or none."""
        if isinstance(message, list):
            self.messages.extend(message)
        elif message is not None:
            self.messages.append(message)

    def numeric(self, code: str, *params: str) -> None:
        """Add a numeric reply to this client."""
        self.add(self.session.numeric(code, *params))

    def fail(self, command: str, code: str, *context_and_text: str) -> None:
        """A standard-replies FAIL (``FAIL <command> <code> [context...] :text``)."""
        self.add(Message("FAIL", [command, code, *context_and_text], self.session.server_name))

    def flush(self) -> None:
        """Write what is held, labelled as the client asked."""
        try:
            self._write()
        finally:  # a hook (a JOIN replay's hold) runs even if the write failed
            after, self._after = self._after, None
            for fn in after or ():
                fn()

    def _write(self) -> None:
        session = self.session
        held, self.messages = self.messages, []
        if any(callable(m) for m in held):
            held = [line for m in held for line in (m() if callable(m) else (m,))]
        messages = cast("list[Message]", held)  # what was made later is made now
        label = self.label
        if label is None:
            if messages:
                session.write_messages(messages)
            return
        if not messages:
            session.write_messages([Message("ACK", [], session.server_name, {"label": label})])
        elif len(messages) == 1 or is_multiline_batch(messages):
            # one line, or one multiline batch (an echo): the label goes on its first line
            session.write_messages([messages[0].with_tags(label=label), *messages[1:]])
        elif C.BATCH in session.caps:
            ref = session.server.batch_ref("L")
            out = [Message("BATCH", [f"+{ref}", "labeled-response"], session.server_name, {"label": label})]
            out.extend(m.with_tags(batch=ref) if "batch" not in m.tags else m for m in messages)
            out.append(Message("BATCH", [f"-{ref}"], session.server_name))
            session.write_messages(out)
        else:
            session.write_messages(messages)
