"""Units of ``HeldOutput``: a session's output held behind the places of JOIN replays."""
from __future__ import annotations

from twisted.internet import task

from chathub.protocols.irc.heldoutput import REPLAY_WAIT, HeldOutput


class Writer:
    """Records what reaches the connection, in order."""

    def __init__(self) -> None:
        self.out: list[object] = []
        self.pending_bytes = 0  # what the connection's send queue holds
        #: a write of a key makes the session write its value (through what it writes to)
        self.reply: dict[bytes, bytes] = {}
        self.session_out: object = None

    def write(self, data: bytes) -> None:
        if data == b"boom":
            raise RuntimeError("a broken write")
        self.out.append(data)
        if data in self.reply:
            self.session_out.write(self.reply[data])  # type: ignore[attr-defined]

    def write_frames(self, data: bytes) -> None:
        self.out.append(("frames", data))

    def lose_connection(self) -> None:
        self.out.append("closed")


def held(limit: int = 1000):
    clock, writer, back = task.Clock(), Writer(), []
    return HeldOutput(writer, limit, clock, back.append), writer, clock, back


def test_each_replay_is_written_in_its_place_once_every_replay_is_in():
    out, writer, clock, back = held()
    first = out.slot()
    out.write(b"live 1")
    second = out.slot()
    out.write_frames(b"live 2")
    assert out.fill(second, b"replay 2") is True
    assert writer.out == [] and back == []  # the first is still missing
    assert out.fill(first, b"") is True  # nothing to replay: its place stays empty
    assert writer.out == [b"live 1", b"replay 2", ("frames", b"live 2")]
    assert back == [writer] and not clock.getDelayedCalls()


def test_a_replay_later_than_the_wait_is_left_to_its_caller():
    out, writer, clock, back = held()
    place = out.slot()
    out.write(b"live")
    clock.advance(REPLAY_WAIT)
    assert writer.out == [b"live"] and back == [writer]
    assert out.fill(place, b"late") is False  # the caller writes it after the rest


def test_more_than_the_limit_held_goes_out_at_once_in_order():
    out, writer, clock, back = held(limit=10)
    out.slot()
    out.write(b"12345")
    out.write(b"678901")  # 11 bytes held: past the limit
    assert writer.out == [b"12345", b"678901"] and back == [writer] and not clock.getDelayedCalls()


def test_a_close_is_not_held_up_by_a_replay():
    out, writer, clock, back = held()
    out.slot()
    out.write(b"ERROR :bye")
    out.lose_connection()
    assert writer.out == [b"ERROR :bye", "closed"] and not clock.getDelayedCalls()


def test_a_lost_connection_drops_what_is_held_and_stops_waiting():
    out, writer, clock, back = held()
    place = out.slot()
    out.write(b"live")
    out.drop()
    assert writer.out == [] and back == [writer] and not clock.getDelayedCalls()
    assert out.fill(place, b"late") is False  # the replay's caller finds the connection closed


def test_a_place_made_late_in_a_hold_gets_its_own_full_wait():
    """A second JOIN near the end of the first one's wait: its replay may take the whole
    wait too, and what came before its place goes out once the first replay is in."""
    out, writer, clock, back = held()
    first = out.slot()
    out.write(b"join 2 reply")
    clock.advance(REPLAY_WAIT * 0.9)
    second = out.slot()
    out.write(b"live")
    assert out.fill(first, b"replay 1") is True
    assert writer.out == [b"replay 1", b"join 2 reply"] and back == []  # the rest waits for the second
    clock.advance(REPLAY_WAIT * 0.5)  # past the first place's time, within the second's
    assert writer.out == [b"replay 1", b"join 2 reply"]
    assert out.fill(second, b"replay 2") is True
    assert writer.out == [b"replay 1", b"join 2 reply", b"replay 2", b"live"]
    assert back == [writer] and not clock.getDelayedCalls()


def test_a_place_given_up_lets_what_follows_it_go_up_to_the_next_place():
    out, writer, clock, back = held()
    first = out.slot()
    out.write(b"a")
    clock.advance(REPLAY_WAIT / 2)
    second = out.slot()
    out.write(b"b")
    clock.advance(REPLAY_WAIT / 2)  # the first place's time is up, not the second's
    assert writer.out == [b"a"] and back == []
    assert out.fill(first, b"late") is False
    clock.advance(REPLAY_WAIT / 2)
    assert writer.out == [b"a", b"b"] and back == [writer] and not clock.getDelayedCalls()
    assert out.fill(second, b"late") is False


def test_the_bound_counts_what_the_send_queue_holds_already():
    """Held output and the send queue share ``[limits] sendq_bytes``: a connection never
    holds more than the bound in all."""
    out, writer, clock, back = held(limit=10)
    writer.pending_bytes = 6
    out.slot()
    out.write(b"1234")
    assert writer.out == [] and out.pending_bytes == 10
    out.write(b"5")  # 11 in all
    assert writer.out == [b"1234", b"5"] and back == [writer]


def test_a_write_that_fails_does_not_stop_the_rest():
    out, writer, clock, back = held()
    place = out.slot()
    out.write(b"boom")
    out.write(b"after")
    assert out.fill(place, b"replay") is True
    assert writer.out == [b"replay", b"after"] and back == [writer]


def test_what_is_written_while_held_output_goes_out_comes_after_it():
    """A write that makes the session write again (an overflow's notice, say) does not
    overtake what was held before it."""
    out, writer, clock, back = held()
    writer.reply, writer.session_out = {b"x": b"echo"}, out
    place = out.slot()
    out.write(b"x")
    out.write(b"y")
    assert out.fill(place, b"") is True
    assert writer.out == [b"x", b"y", b"echo"] and back == [writer]
