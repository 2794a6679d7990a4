"""Graceful shutdown (``SIGTERM``, ``systemctl stop``): every connection is told in its own
terms, nothing new is accepted, the store is flushed, and the process is gone within
``server.shutdown_timeout`` whatever hangs.
"""
from __future__ import annotations

import os
import threading
from typing import Callable, Optional

#: what every connection is told
REASON = "Server shutting down"


class Deadline:
    """Ends the process (status 1) if shutdown is not over ``seconds`` after ``start()``.

    A thread, not a reactor timer: a store thread that never returns blocks the reactor's
    own shutdown (it joins its thread pool), and a timer of that reactor would never fire."""

    def __init__(self, seconds: float, on_expiry: Optional[Callable[[], None]] = None) -> None:
        self.seconds = seconds
        self._timer: Optional[threading.Timer] = None
        self._on_expiry = on_expiry or self._exit

    def start(self) -> None:
        """Start counting (once)."""
        if self._timer is None:
            self._timer = threading.Timer(self.seconds, self._on_expiry)
            self._timer.daemon = True  # a finished shutdown ends the process without it
            self._timer.start()

    def cancel(self) -> None:
        """Shutdown is over in time."""
        if self._timer is not None:
            self._timer.cancel()

    def _exit(self) -> None:
        message = f"chathub: shutdown took longer than server.shutdown_timeout ({self.seconds:g} s); exiting now\n"
        os.write(2, message.encode())
        os._exit(1)
