"""Units of ``HeldOutput``: a session's output held behind the places of JOIN replays."""
from __future__ import annotations

from twisted.internet import task

from chathub.protocols.irc.heldoutput import REPLAY_WAIT, HeldOutput


class Writer:
    """Records what reaches the connection, in order."""

    def __init__(self) -> None:
        self.out: list[object] = []

    def write(self, data: bytes) -> None:
        self.out.append(data)

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
