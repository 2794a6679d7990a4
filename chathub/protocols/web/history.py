"""History for chathub.v1 requests, read through the hub's store (``chathub.store.interfaces.IStore``).

A page is asked for one item longer than wanted, so the answer can say whether there is
more to scroll back to without a second query.
"""
from __future__ import annotations

from typing import Optional, Union

from twisted.internet.defer import Deferred

from chathub.events import Kind

#: what a web client's scroll-back shows
HISTORY_KINDS = frozenset(Kind.CHAT)

RefValue = Union[str, int, float, None]


class HistoryUnavailable(Exception):
    """This server keeps no history (no store, or history disabled)."""


def _ref(value: RefValue):
    if value is None:
        return None
    if isinstance(value, str):
        return ("msgid", value)
    return ("timestamp", float(value))


def fetch_history(
    hub, user, target: str, limit: int, before: RefValue = None, after: RefValue = None
) -> Deferred:
    """Fire with ``(events, more)``: a page of ``target``'s history, oldest first.

    ``before``/``after`` are a message id (str) or epoch seconds (number); with neither,
    the newest page. ``more`` says whether older (or, with ``after``, newer) items exist.
    """
    if not hub.history_available:
        raise HistoryUnavailable("this server keeps no history")
    store = hub.store
    viewer = hub.history_viewer(user)
    target = hub.history_target(user, target)
    if before is not None:
        d = store.before(viewer, target, _ref(before), limit + 1, HISTORY_KINDS)
        newest_first = False
    elif after is not None:
        d = store.after(viewer, target, _ref(after), limit + 1, HISTORY_KINDS)
        newest_first = True
    else:
        d = store.latest(viewer, target, None, limit + 1, HISTORY_KINDS)
        newest_first = False

    def page(events):
        events = list(events)
        more = len(events) > limit
        if more:
            # drop the extra item at the far end of the direction we read in
            events = events[:limit] if newest_first else events[1:]
        return events, more

    return d.addCallback(page)
