"""What every participant that delivers by encoding shares (``IParticipant.deliver``)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from chathub.events import Event


class EncodingParticipant:
    """``deliver`` for a participant whose single-recipient delivery is ``encode`` + ``send``."""

    __slots__ = ()

    if TYPE_CHECKING:
        # what the class this is mixed into provides (``IParticipant``)
        def encode(self, event: Event) -> Optional[bytes]: ...

        def send(self, data: bytes) -> None: ...

    def deliver(self, event: Event) -> None:
        """Encode ``event`` in this participant's format and send it, unless it is not shown."""
        data = self.encode(event)
        if data is not None:
            self.send(data)
