"""The store as part of the twistd service tree: opened on start, closed (flushed) on stop,
with retention applied periodically.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Optional

from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.python.failure import Failure

from chathub.config.storage import HistoryConfig
from chathub.store.interfaces import IStore


class RetentionService(service.Service):
    """Runs ``store.prune(now)`` every ``history.prune_interval_seconds`` while running.

    Does nothing when neither ``max_age_days`` nor ``max_per_target`` is set. A failed
    prune is logged and retried at the next interval.
    """

    log = Logger()
    name = "retention"  # type: ignore[assignment]  # Twisted's Service says ``name = None``, unannotated

    def __init__(self, store: IStore, history: HistoryConfig, clock: Any = None) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        self.store = store
        self.history = history
        self.clock = clock
        self._loop: Optional[task.LoopingCall] = None
        self._running_prune: Optional[defer.Deferred[int]] = None
        self._waiting: list[defer.Deferred[int]] = []

    @property
    def active(self) -> bool:
        return self.history.max_age_days > 0 or self.history.max_per_target > 0

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]  # Twisted's, unannotated (mypy#16653)
        if not self.active:
            return
        self._loop = task.LoopingCall(self.prune_now)
        self._loop.clock = self.clock
        self._loop.start(self.history.prune_interval_seconds, now=True)

    def prune_now(self) -> defer.Deferred[int]:
        """Apply retention once; fires with the number of events removed (0 on failure).

        While a prune runs, another call waits for that one instead of starting a second.
        """
        mine: defer.Deferred[int] = defer.Deferred()
        self._waiting.append(mine)
        if self._running_prune is None:
            d = self.store.prune(self.clock.seconds())
            d.addErrback(self._failed)
            self._running_prune = d
            d.addCallback(self._finished)
        return mine

    def _finished(self, removed: int) -> None:
        self._running_prune = None
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(removed)

    def _failed(self, failure: Failure) -> int:
        self.log.failure("history retention failed; will retry", failure)
        return 0

    def stopService(self) -> Optional[defer.Deferred[int]]:
        super().stopService()  # type: ignore[no-untyped-call]  # Twisted's, unannotated (mypy#16653)
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self._running_prune is not None:
            return self.prune_now()  # let the running prune finish before the store closes
        return None


class StoreService(service.MultiService):
    """Opens the store when started and closes it (after the last commit) when stopped.

    ``ready()`` gives a Deferred that fires with the store once it is open, or fails with
    its ``StorageError``; ``on_failure(failure)`` is also called then (the default logs
    the message and stops the reactor, so the server does not run without its database).
    Call ``store.preflight()`` in the twistd plugin before this starts to fail the
    start-up synchronously with the message on stderr.
    """

    log = Logger()
    name = "store"  # type: ignore[assignment]  # Twisted's Service says ``name = None``, unannotated

    def __init__(
        self,
        store: IStore,
        history: Optional[HistoryConfig] = None,
        on_failure: Optional[Callable[[Failure], object]] = None,
        clock: Any = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted's, unannotated (mypy#16653)
        self.store = store
        self.history = history or HistoryConfig()
        self.on_failure = on_failure or self._stop_reactor
        self._clock = clock
        self._opened: Optional[defer.Deferred[None]] = None
        self._waiting: list[defer.Deferred[IStore]] = []
        self._result: Any = None  # the store once open, or the Failure of its opening
        self.retention = RetentionService(store, self.history, clock)

    def ready(self) -> defer.Deferred[IStore]:
        """Fires with the store once it is open (or fails with why it could not open)."""
        if self._result is not None:
            return defer.succeed(self._result) if not isinstance(self._result, Failure) else defer.fail(self._result)
        d: defer.Deferred[IStore] = defer.Deferred()
        self._waiting.append(d)
        return d

    def startService(self) -> None:
        service.Service.startService(self)
        started = time.monotonic()
        self._opened = self.store.open()
        self._opened.addCallbacks(self._open, self._failed, callbackArgs=(started,))

    def _open(self, _: object, started: float) -> None:
        self.log.info(
            "{db} ready in {seconds:.2f}s", db=self.store.description, seconds=time.monotonic() - started
        )
        if self.retention.parent is None:
            # starts it, since we are running (Twisted's, unannotated: mypy#16651)
            self.retention.setServiceParent(self)  # type: ignore[no-untyped-call]
        self._settle(self.store)

    def _failed(self, failure: Failure) -> None:
        self.log.critical("storage failed to open: {message}", message=failure.getErrorMessage())
        self.on_failure(failure)
        self._settle(failure)

    def _settle(self, result: Any) -> None:
        self._result = result
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)

    def _stop_reactor(self, failure: Failure) -> None:
        from twisted.internet import reactor

        if reactor.running:
            reactor.stop()

    @defer.inlineCallbacks
    def stopService(self) -> Any:
        yield defer.maybeDeferred(service.MultiService.stopService, self)
        if self._opened is not None and not isinstance(self._result, Failure):
            yield self._opened
            yield self.store.close()
