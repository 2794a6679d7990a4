"""Group commit: one serial queue for every write, events batched into one transaction.

Appended events wait in a queue; the writer takes every event that arrived during one
reactor turn, or while the previous transaction ran, and commits them together. Other
writes (accounts, rooms, pruning) run as their own transactions in the same queue, so
all writes are applied in the order they were asked for, whatever thread pool runs them.

Each Deferred fires, in queue order, only after its transaction committed. When a batch
fails, its events are retried one per transaction, so one bad event cannot take the
others down with it, and a passing fault (a lost connection that came back) costs
nothing; the msgid's uniqueness makes a retry of an event that did commit harmless.

A failing database (a full disk) refuses every write until it recovers: that run of
failures is logged as one episode (``FailureEpisode``), not once per refused message.
"""
from __future__ import annotations

import time
from collections import deque
from contextlib import nullcontext
from typing import Any, Callable, ContextManager, Optional, cast

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from chathub.counters import BATCH_BUCKETS, LATENCY_BUCKETS, Histogram
from chathub.store.interfaces import Notify, StorageError


class _Write:
    __slots__ = ("item", "fn", "args", "deferred", "notify", "alone", "tries", "limit")

    def __init__(
        self,
        item: Any,
        fn: Optional[Callable[..., Any]],
        args: tuple[Any, ...],
        alone: bool,
        notify: Optional[Notify] = None,
    ) -> None:
        self.item = item  # an event row for the batch function, or None for a call
        self.fn = fn
        self.args = args
        # told the outcome: a Deferred, or (appends that pass one) a plain callable
        self.notify = notify
        self.deferred: Optional[Deferred[Any]] = Deferred() if notify is None else None
        self.alone = alone
        self.tries = 0  # transient failures tried again
        #: the most items a batch starting with this write may hold (0: ``max_batch``);
        #: halved each time a batch holding it fails (``_failed``)
        self.limit = 0

    def settle(self, result: Any = None, failure: Optional[Failure] = None) -> None:
        """Report the outcome to whoever waits for this write."""
        deferred = self.deferred
        if deferred is not None:  # no notify given
            if failure is None:
                deferred.callback(result)
            else:
                deferred.errback(failure)
            return
        try:
            self.notify(failure)  # type: ignore[misc]  # a write without a Deferred has a notify
        except Exception:
            GroupCommitWriter.log.failure("a committed write's callback failed")


class FailureEpisode:
    """A run of failed writes, logged once: the first failure with its traceback, then at
    most every ``REMIND_EVERY`` seconds a line with the count so far, and one line when a
    write succeeds again. Refused writes in between are only counted."""

    REMIND_EVERY = 60.0

    __slots__ = ("name", "clock", "log", "since", "count", "_reminded", "_last")

    def __init__(self, name: str, clock: IReactorTime, log: Logger) -> None:
        self.name = name
        self.clock = clock
        self.log = log
        self.since: Optional[float] = None  # clock time of the first failure, None when writes work
        self.count = 0
        self._reminded = 0.0
        self._last = ""

    @property
    def failing(self) -> bool:
        """True from a refused write until the next write that succeeds."""
        return self.since is not None

    def failed(self, failure: Failure, error: StorageError, what: str) -> None:
        """A write (``what``) was refused with ``error`` (the store's words for ``failure``)."""
        now = self.clock.seconds()
        self.count += 1
        self._last = str(error)
        if self.since is None:
            self.since = self._reminded = now
            self.log.failure(
                "{db}: writes are failing since {since}: could not write {what}: {error}. Writes refused "
                "from now on are counted, not logged one by one, until one succeeds",
                failure, db=self.name, since=_utc(now), what=what, error=self._last,
            )
        elif now - self._reminded >= self.REMIND_EVERY:
            self._reminded = now
            self.log.critical(
                "{db}: writes still failing: {count} refused since {since} (the last: {error})",
                db=self.name, count=self.count, since=_utc(self.since), error=self._last,
            )

    def succeeded(self) -> None:
        """A write committed: the episode, if any, is over."""
        if self.since is None:
            return
        now = self.clock.seconds()
        self.log.warn(
            "{db}: writes succeed again; {count} writes were refused from {since} to {until} ({seconds:.0f} s)",
            db=self.name, count=self.count, since=_utc(self.since), until=_utc(now), seconds=now - self.since,
        )
        self.since = None
        self.count = 0


#: most appended items in one transaction. Under load the queue holds what every client has
#: in flight (the rooms benchmark: about 4,000 messages), and taking it all at once costs
#: less per message: a commit writes a page of the (conv, conv_seq) index for each
#: conversation it touches however many rows it holds, and the fan-out of a bigger group
#: gives each recipient more messages per ``send`` (1,000 a commit: 228,000 deliveries/s;
#: 4,000 and 10,000: 269,000 and 268,000). It bounds the work of one transaction (and of
#: the retry in halves of a failed one), not the queue.
MAX_BATCH = 5000


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class GroupCommitWriter:
    """Runs writes one transaction at a time, batching appended items.

    ``run(fn, *args)`` must run ``fn(txn, *args)`` in one transaction off the reactor
    thread and return a Deferred of its result (``adbapi.ConnectionPool.runInteraction``).
    ``write_batch(txn, items)`` writes a list of appended items. ``explain(failure, what)``
    turns a database failure into a ``StorageError``; the writer logs failures, one
    ``FailureEpisode`` per run of them (``name`` says which database). A write whose failure
    ``transient(failure)`` calls passing (a dropped connection, replaced on the next use)
    is tried again, up to ``retries`` times, before it fails: once per connection the pool
    may hold, since after a database restart every pooled connection is dead and each try
    may be handed the next dead one. ``around_release()`` is a context manager wrapped
    around the firing of one committed group's Deferreds (the hub's fan-out batching, so
    the group reaches each recipient as one write).
    """

    log = Logger()

    def __init__(
        self,
        run: Callable[..., Deferred[Any]],
        write_batch: Callable[[Any, list[Any]], Any],
        explain: Callable[[Failure, str], StorageError],
        clock: IReactorTime,
        max_batch: int = MAX_BATCH,
        transient: Callable[[Failure], bool] = lambda failure: False,
        around_release: Callable[[], ContextManager[object]] = nullcontext,
        name: str = "storage",
        committed: Optional[Callable[[list[Any], Any], None]] = None,
        retries: int = 1,
    ) -> None:
        self._transient = transient
        self._retries = retries
        #: told ``(items, result)`` of each committed batch, before its writes settle
        self._committed = committed
        self.episode = FailureEpisode(name, clock, self.log)
        self._around_release = around_release
        self._run = run
        self._write_batch = write_batch
        self._explain = explain
        self._clock = clock
        self._max_batch = max_batch
        self._queue: deque[_Write] = deque()
        self._busy = False
        self._scheduled: Optional[IDelayedCall] = None
        self._idle_waiters: list[Deferred[None]] = []
        self.closed = False
        #: transactions committed and items written, for tests and metrics
        self.commits = 0
        self.items_written = 0
        #: seconds each transaction of appended items took, and how many items it held
        self.commit_seconds = Histogram(LATENCY_BUCKETS)
        self.batch_sizes = Histogram(BATCH_BUCKETS)
        self._started = 0.0  # when the running transaction was handed to the database

    @property
    def pending(self) -> int:
        """Writes queued and not yet committed (the running transaction included)."""
        return len(self._queue)

    def append(
        self, item: Any, needs_write: bool = True, notify: Optional[Notify] = None
    ) -> Optional[Deferred[None]]:
        """Queue one item for the next batch; fires with None once committed.

        An item with nothing to write fires at once when no earlier write is pending
        (otherwise it waits its turn, so Deferreds still fire in append order). With
        ``notify``, no Deferred is made: ``notify(None)`` is called once committed, or
        ``notify(failure)``, in the same order, and None is returned (the hub appends
        every message this way: a Deferred per event was a tenth of its work).
        """
        if not needs_write and not self._queue and not self._busy and not self.closed:
            if notify is None:
                return succeed(None)
            notify(None)
            return None
        return self._enqueue(_Write(item, None, (), alone=False, notify=notify))

    def call(self, fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
        """Run ``fn(txn, *args)`` in its own transaction, after every write queued before it."""
        return cast("Deferred[Any]", self._enqueue(_Write(None, fn, args, alone=True)))  # no notify: a Deferred

    def idle(self) -> Deferred[None]:
        """Fires once everything queued so far has been committed (or has failed)."""
        if not self._queue and not self._busy:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._idle_waiters.append(d)
        return d

    def close(self) -> Deferred[None]:
        """Refuse new writes, and fire once the queued ones are done."""
        self.closed = True
        return self.idle()

    def _enqueue(self, write: _Write) -> Optional[Deferred[Any]]:
        if self.closed:
            write.settle(failure=Failure(StorageError("storage is closed: the server is shutting down")))
            return write.deferred
        self._queue.append(write)
        if not self._busy and self._scheduled is None:
            # wait for the end of this reactor turn, so its appends share one commit
            self._scheduled = self._clock.callLater(0, self._next)
        return write.deferred

    def _take(self) -> list[_Write]:
        queue = self._queue
        head = queue[0]
        if head.alone:
            return [head]
        batch: list[_Write] = []
        most = min(head.limit, self._max_batch) if head.limit else self._max_batch
        for write in queue:
            if write.alone or len(batch) >= most:
                break
            batch.append(write)
        return batch

    def _next(self) -> None:
        self._scheduled = None
        if self._busy:
            return
        if not self._queue:
            waiters, self._idle_waiters = self._idle_waiters, []
            for d in waiters:
                d.callback(None)
            return
        self._busy = True
        self._started = self._clock.seconds()
        batch = self._take()
        head = batch[0]
        if head.item is None:
            d = self._run(head.fn, *head.args)  # a call: its function and arguments
        else:
            d = self._run(self._write_batch, [w.item for w in batch])
        d.addCallbacks(self._done, self._failed, callbackArgs=(batch,), errbackArgs=(batch,))

    def _pop(self, batch: list[_Write]) -> None:
        for _ in batch:
            self._queue.popleft()

    def _done(self, result: Any, batch: list[_Write]) -> None:
        self._pop(batch)
        self.commits += 1
        if self.episode.failing:
            self.episode.succeeded()
        if batch[0].item is not None:
            self.items_written += len(batch)
            self.commit_seconds.observe(self._clock.seconds() - self._started)
            self.batch_sizes.observe(len(batch))
            if self._committed is not None:
                try:
                    self._committed([w.item for w in batch], result)
                except Exception:
                    self.log.failure("a committed batch's listener failed")
        # still busy while callbacks run: what they append joins the next batch
        with self._around_release():
            for write in batch:
                write.settle(result if write.item is None else None)
        self._busy = False
        self._next()

    def _failed(self, failure: Failure, batch: list[_Write]) -> None:
        quiet = self.episode.failing  # each write is told; the episode is logged once
        if len(batch) > 1:
            # retry in halves, down to one per transaction: only the writes that really
            # fail will fail, and one bad write among 5,000 costs ~26 transactions, not 5,000
            if not quiet:
                self.log.warn(
                    "a batch of {count} history writes failed ({error}); retrying it in halves",
                    count=len(batch),
                    error=failure.getErrorMessage(),
                )
            half = (len(batch) + 1) // 2
            for write in batch:
                write.limit = half
            self._busy = False
            self._next()
            return
        (write,) = batch
        if write.tries < self._retries and self._transient(failure):
            if not quiet:
                self.log.warn("a storage write failed ({error}); trying it again", error=failure.getErrorMessage())
            write.tries += 1
            self._busy = False
            self._next()
            return
        self._pop(batch)
        if isinstance(failure.value, StorageError):
            error = failure  # a refusal the caller expects (an account that exists)
        else:
            what = "an event" if write.fn is None else write.fn.__name__.strip("_").replace("_", " ")
            explained = self._explain(failure, what)
            self.episode.failed(failure, explained, what)
            error = Failure(explained)
        write.settle(failure=error)
        self._busy = False
        self._next()

