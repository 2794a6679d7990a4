"""Splitting a byte stream into lines, for every line-based protocol (telnet, IRC).

Each protocol gives its own limit and says what to do with an over-long line (the line
protocol answers ``! line too long``, IRC 417 ERR_INPUTTOOLONG); the buffer never holds
more than one line's worth, whatever the client sends.
"""
from __future__ import annotations

from typing import Callable


class LineBuffer:
    """Splits a byte stream into lines (LF or CRLF), dropping over-long ones with a callback.

    ``max_bytes`` bounds a line without its line ending. A line over it is reported once
    with ``on_too_long`` and skipped up to its end. After ``stop()`` nothing more is
    delivered (the connection is closing), even of data already fed.
    """

    __slots__ = ("max_bytes", "on_line", "on_too_long", "stopped", "_buffer", "_discarding")

    def __init__(self, max_bytes: int, on_line: Callable[[bytes], None], on_too_long: Callable[[], None]):
        self.max_bytes = max_bytes
        self.on_line = on_line
        self.on_too_long = on_too_long
        self.stopped = False
        self._buffer = b""
        self._discarding = False

    def feed(self, data: bytes) -> None:
        """Add bytes; calls ``on_line`` for every complete line (without its line ending)."""
        buffer = self._buffer + data
        max_bytes = self.max_bytes
        while not self.stopped:
            end = buffer.find(b"\n")
            if end < 0:
                if len(buffer) > max_bytes:
                    if not self._discarding:
                        self._discarding = True
                        self.on_too_long()
                    buffer = b""
                break
            line, buffer = buffer[:end], buffer[end + 1 :]
            if self._discarding:
                self._discarding = False
                continue
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > max_bytes:
                self.on_too_long()
                continue
            self.on_line(line)
        self._buffer = b"" if self.stopped else buffer

    @property
    def buffered(self) -> int:
        """Bytes held of an unfinished line."""
        return len(self._buffer)

    def stop(self) -> None:
        """Deliver no more lines and forget what is buffered."""
        self.stopped = True
        self._buffer = b""
