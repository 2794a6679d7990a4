"""History for chathub.v1 requests, read through the hub (``ChatHub.history``).

A page is asked for one item longer than wanted, so the answer can say whether there is
more to scroll back to without a second query.
"""
from __future__ import annotations

from typing import Union

from twisted.internet.defer import Deferred

from chathub.events import Kind

#: what a web client's scroll-back shows
HISTORY_KINDS = frozenset(Kind.TEXT_KINDS)

RefValue = Union[str, int, float, None]


class HistoryUnavailable(Exception):
    """This server keeps no history (no store, or history disabled)."""


#: the last second of year 9999: later (or non-finite) times cannot be stored or compared
LATEST_TIME = 253402300799.0


class BadReference(ValueError):
    """A ``before``/``after`` that names no possible message: ``field`` says which."""

    def __init__(self, field: str) -> None:
        super().__init__(f"'{field}' must be a message id or a time in seconds since 1970")
        self.field = field


def _ref(value: RefValue, field: str):
    if value is None:
        return None
    if isinstance(value, str):
        return ("msgid", value)
    when = float(value)  # JSON's 1e999 arrives as inf, and NaN compares with nothing
    if not 0.0 <= when <= LATEST_TIME:
        raise BadReference(field)
    return ("timestamp", when)


def fetch_history(
    hub, user, target: str, limit: int, before: RefValue = None, after: RefValue = None
) -> Deferred:
    """Fire with ``(events, more)``: a page of ``target``'s history, oldest first.

    ``before``/``after`` are a message id (str) or epoch seconds (number); with neither,
    the newest page. A time outside 1970 to 9999 (or not finite) raises ``BadReference``.
    ``more`` says whether older (or, with ``after``, newer) items exist.
    """
    if not hub.history_available:
        raise HistoryUnavailable("this server keeps no history")
    before_ref, after_ref = _ref(before, "before"), _ref(after, "after")
    if before_ref is not None:
        d = hub.history(user, "before", target, before_ref, limit=limit + 1, kinds=HISTORY_KINDS)
        newest_first = False
    elif after_ref is not None:
        d = hub.history(user, "after", target, after_ref, limit=limit + 1, kinds=HISTORY_KINDS)
        newest_first = True
    else:
        d = hub.history(user, "latest", target, None, limit=limit + 1, kinds=HISTORY_KINDS)
        newest_first = False

    def page(events):
        events = list(events)
        more = len(events) > limit
        if more:
            # drop the extra item at the far end of the direction we read in
            events = events[:limit] if newest_first else events[1:]
        return events, more

    return d.addCallback(page)
