"""The group-commit writer alone, with a fake transaction runner and ``task.Clock``."""
from __future__ import annotations

import pytest
from twisted.internet import defer, task
from twisted.python.failure import Failure

from chathub.store.interfaces import AccountExists, StorageError
from chathub.store.writer import GroupCommitWriter


class FakeRunner:
    """Records each transaction; the test decides when (and how) it finishes."""

    def __init__(self) -> None:
        self.transactions: list[tuple] = []  # (fn, args, deferred)

    def run(self, fn, *args) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self.transactions.append((fn, args, d))
        return d

    def finish(self, index: int = -1, result=None) -> None:
        self.transactions[index][2].callback(result)

    def fail(self, index: int = -1, exc: Exception = RuntimeError("disk I/O error")) -> None:
        self.transactions[index][2].errback(Failure(exc))


def write_batch(txn, items):  # the writer only passes it through
    raise AssertionError("not called by the fake runner")


def make_writer():
    clock = task.Clock()
    runner = FakeRunner()
    explained = []

    def explain(failure, what):
        explained.append((failure.getErrorMessage(), what))
        return StorageError(f"could not be written: {failure.getErrorMessage()}")

    writer = GroupCommitWriter(runner.run, write_batch, explain, clock, max_batch=5)
    return writer, runner, clock, explained


def outcomes(deferreds):
    seen = []
    for i, d in enumerate(deferreds):
        d.addCallbacks(lambda _, i=i: seen.append((i, "ok")), lambda f, i=i: seen.append((i, f.value)))
    return seen


def test_one_reactor_turn_is_one_transaction():
    writer, runner, clock, _ = make_writer()
    seen = outcomes([writer.append(n) for n in range(3)])
    assert runner.transactions == []  # waits for the end of the turn
    clock.advance(0)
    assert len(runner.transactions) == 1
    fn, (items,), _ = runner.transactions[0]
    assert fn is write_batch and items == [0, 1, 2]
    assert seen == []  # nothing fires before the commit
    runner.finish()
    assert seen == [(0, "ok"), (1, "ok"), (2, "ok")]
    assert (writer.commits, writer.items_written, writer.pending) == (1, 3, 0)


def test_appends_during_a_commit_wait_for_the_next_one_in_order():
    writer, runner, clock, _ = make_writer()
    seen = outcomes([writer.append("a")] + [])
    clock.advance(0)
    later = [writer.append(x) for x in "bcd"]
    seen2 = outcomes(later)
    clock.advance(0)
    assert len(runner.transactions) == 1  # still one in flight
    runner.finish(0)
    assert seen == [(0, "ok")]
    assert len(runner.transactions) == 2
    assert runner.transactions[1][1] == (["b", "c", "d"],)
    runner.finish(1)
    assert seen2 == [(0, "ok"), (1, "ok"), (2, "ok")]


def test_batches_are_bounded():
    writer, runner, clock, _ = make_writer()
    outcomes([writer.append(n) for n in range(12)])
    clock.advance(0)
    sizes = []
    while runner.transactions and len(sizes) < 10:
        sizes.append(len(runner.transactions[-1][1][0]))
        runner.finish()
        if writer.pending == 0:
            break
    assert sizes == [5, 5, 2]


def test_calls_run_alone_between_batches_in_order():
    writer, runner, clock, _ = make_writer()
    log = []
    writer.append(1).addCallback(lambda _: log.append("e1"))
    writer.call("save_room", "#a").addCallback(lambda r: log.append(("call", r)))
    writer.append(2).addCallback(lambda _: log.append("e2"))
    clock.advance(0)
    assert runner.transactions[0][1] == ([1],)
    runner.finish()
    assert runner.transactions[1][:2] == ("save_room", ("#a",))
    runner.finish(result="saved")
    assert runner.transactions[2][1] == ([2],)
    runner.finish()
    assert log == ["e1", ("call", "saved"), "e2"]


def test_a_failed_batch_is_retried_until_only_the_bad_write_fails():
    writer, runner, clock, explained = make_writer()
    seen = outcomes([writer.append(n) for n in range(3)])
    clock.advance(0)
    runner.fail()  # the batch
    runner.fail(exc=ValueError("bad row"))  # its first half, 1 among them
    runner.finish()  # 0 is fine alone
    runner.fail(exc=ValueError("bad row"))  # 1 really fails
    runner.finish()  # 2 is fine
    assert [t[1] for t in runner.transactions] == [([0, 1, 2],), ([0, 1],), ([0],), ([1],), ([2],)]
    assert [s[0] for s in seen] == [0, 1, 2]
    assert seen[0][1] == "ok" and seen[2][1] == "ok"
    assert isinstance(seen[1][1], StorageError)
    assert "bad row" in str(seen[1][1])
    assert explained == [("bad row", "an event")]


def test_refusals_from_calls_pass_unchanged_and_are_not_logged_as_failures():
    writer, runner, clock, explained = make_writer()
    seen = outcomes([writer.call(lambda txn: None)])
    clock.advance(0)
    runner.fail(exc=AccountExists("alice"))
    assert isinstance(seen[0][1], AccountExists)
    assert explained == []


def test_close_waits_for_queued_writes_then_refuses():
    writer, runner, clock, _ = make_writer()
    seen = outcomes([writer.append("x")])
    closed = []
    writer.close().addCallback(closed.append)
    assert closed == []
    clock.advance(0)
    runner.finish()
    clock.advance(0)
    assert seen == [(0, "ok")] and closed == [None]
    refused = outcomes([writer.append("y")])
    assert isinstance(refused[0][1], StorageError)
    assert "shutting down" in str(refused[0][1])


def test_idle_when_nothing_queued():
    writer, _, _, _ = make_writer()
    fired = []
    writer.idle().addCallback(fired.append)
    assert fired == [None]


@pytest.mark.parametrize("retries", [1, 3])
def test_a_transient_failure_is_tried_again_up_to_the_retries(retries):
    """Once by default; with ``retries=N`` (once per pooled connection: after a database
    restart every pooled connection is dead) a write gets past N dead connections."""
    clock = task.Clock()
    runner = FakeRunner()
    writer = GroupCommitWriter(
        runner.run,
        write_batch,
        lambda failure, what: StorageError(failure.getErrorMessage()),
        clock,
        transient=lambda failure: failure.check(ConnectionError) is not None,
        retries=retries,
    )
    seen = outcomes([writer.append("a"), writer.append("b")])
    clock.advance(0)
    runner.fail(exc=ConnectionError("server closed the connection"))  # the batch of two
    for _ in range(retries):
        runner.fail(exc=ConnectionError("server closed the connection"))  # "a" alone, and again
    runner.finish()  # "a" on its last try, on a new connection
    for _ in range(1 + retries):
        runner.fail(exc=ConnectionError("still down"))  # "b" alone, and each of its retries
    assert len(runner.transactions) == 3 + 2 * retries  # no further try of "b"
    assert seen[0] == (0, "ok")
    assert isinstance(seen[1][1], StorageError) and "still down" in str(seen[1][1])


def test_nothing_to_write_fires_at_once_only_when_nothing_is_pending():
    writer, runner, clock, _ = make_writer()
    seen = outcomes([writer.append("nothing", needs_write=False)])
    assert seen == [(0, "ok")] and runner.transactions == []
    order = []
    writer.append("real").addCallback(lambda _: order.append("real"))
    writer.append("nothing", needs_write=False).addCallback(lambda _: order.append("nothing"))
    clock.advance(0)
    assert order == []
    runner.finish()
    assert order == ["real", "nothing"]


def test_notify_appends_are_told_in_order_beside_deferred_ones_and_told_failures():
    """``append(item, notify=f)`` makes no Deferred: f(None) once committed, f(failure) when
    the write fails, in append order with Deferred appends; a raising f stops nothing."""
    writer, runner, clock, _ = make_writer()
    seen: list = []

    def told(name):
        def notify(failure):
            seen.append((name, "ok" if failure is None else failure.value))
            if name == "b":
                raise RuntimeError("a broken callback")
        return notify

    assert writer.append("a", notify=told("a")) is None
    d = writer.append("x")
    d.addCallback(lambda _: seen.append(("x", "ok")))
    assert writer.append("b", notify=told("b")) is None
    writer.append("c", notify=told("c"))
    clock.advance(0)
    runner.finish()
    assert seen == [("a", "ok"), ("x", "ok"), ("b", "ok"), ("c", "ok")]
    assert writer.pending == 0

    # nothing to write and nothing pending: told at once
    seen.clear()
    writer.append("nothing", needs_write=False, notify=told("n"))
    assert seen == [("n", "ok")]

    # a failed batch is retried one by one; only the failing write is told its failure
    seen.clear()
    writer.append("ok1", notify=told("ok1"))
    writer.append("bad", notify=told("bad"))
    clock.advance(0)
    runner.fail()  # the batch
    runner.finish(-1)  # ok1 alone
    runner.fail(-1)  # bad alone
    assert seen[0] == ("ok1", "ok")
    assert seen[1][0] == "bad" and isinstance(seen[1][1], StorageError)

    # closed: told at once with the refusal
    seen.clear()
    writer.close()
    assert writer.append("late", notify=told("late")) is None
    assert seen[0][0] == "late" and "closed" in str(seen[0][1])


def test_a_run_of_failures_is_logged_once_with_a_count_and_its_end():
    """A full disk refuses every write: one traceback when the run starts, a reminder with
    the count at most once a minute, a line when a write succeeds again; never one per write."""
    from twisted.logger import globalLogPublisher

    writer, runner, clock, _ = make_writer()
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        for second in range(130):  # a write a second, each refused
            outcomes([writer.append(second)])
            clock.advance(1)
            runner.fail(exc=OSError("database or disk is full"))
        logged = [e for e in events if e.get("log_namespace", "").startswith("chathub.store.writer")]
        kinds = [kind for e in logged for kind in ("are failing", "still failing") if kind in e["log_format"]]
        assert kinds == ["are failing", "still failing", "still failing"] and len(logged) == 3
        assert logged[0]["log_failure"].check(OSError)  # the first one with its traceback
        assert [e.get("count") for e in logged[1:]] == [61, 121]
        assert writer.episode.failing and writer.episode.count == 130
        writer.append("fine")
        clock.advance(1)
        runner.finish()
        (recovered,) = [e for e in events if "succeed again" in e.get("log_format", "")]
        assert recovered["count"] == 130 and recovered["seconds"] == 130
        assert not writer.episode.failing
    finally:
        globalLogPublisher.removeObserver(events.append)


def test_a_failed_batch_is_retried_in_halves_down_to_the_write_that_fails():
    """One bad write among eight: halves, then quarters, then alone; the others commit in
    groups (7 transactions, not 1 + 8), and only the bad one is told its failure."""
    clock = task.Clock()
    runner = FakeRunner()
    writer = GroupCommitWriter(
        runner.run, write_batch, lambda failure, what: StorageError(failure.getErrorMessage()), clock, max_batch=8
    )
    names = "abcdefgh"
    seen = outcomes([writer.append(n) for n in names])
    clock.advance(0)

    def items(index=-1):
        return "".join(runner.transactions[index][1][0])

    assert items() == names
    runner.fail()  # "e" is bad
    assert items() == "abcd"
    runner.finish()
    assert items() == "efgh"
    runner.fail()
    assert items() == "ef"
    runner.fail()
    assert items() == "e"
    runner.fail()
    assert items() == "f"
    runner.finish()
    assert items() == "gh"
    runner.finish()
    assert len(runner.transactions) == 7 and writer.pending == 0
    assert [i for i, outcome in seen if outcome != "ok"] == [4]
    # writes appended after a retry join the groups again
    late = outcomes([writer.append(n) for n in "xyz"])
    clock.advance(0)
    assert items() == "xyz"
    runner.finish()
    assert late == [(0, "ok"), (1, "ok"), (2, "ok")]
