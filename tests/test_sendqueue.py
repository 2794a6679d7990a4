"""SendQueue: straight through while the transport takes bytes, bounded while it is paused."""
from __future__ import annotations

from types import SimpleNamespace

from twisted.internet.interfaces import IPushProducer
from twisted.internet.testing import StringTransport
from zope.interface.verify import verifyObject

from chathub.protocols.sendqueue import SendQueue


def make(limit: int = 100):
    transport = StringTransport()
    overflows: list[int] = []
    owner = SimpleNamespace(send_queue_overflow=lambda: overflows.append(queue.pending_bytes))
    queue = SendQueue(transport, limit, owner)
    return transport, queue, overflows


def test_registers_as_streaming_producer():
    transport, queue, _ = make()
    assert transport.producer is queue and transport.streaming
    verifyObject(IPushProducer, queue)


def test_writes_go_straight_through_while_not_paused():
    transport, queue, overflows = make(limit=10)
    for _ in range(100):
        queue.write(b"0123456789")  # far beyond the limit in total: the kernel took it
    assert transport.value() == b"0123456789" * 100
    assert queue.pending_bytes == 0 and overflows == []


def test_paused_writes_are_held_and_flushed_in_order_on_resume():
    transport, queue, overflows = make(limit=100)
    queue.write(b"a")
    transport.producer.pauseProducing()  # as the transport does when its buffer fills
    queue.write(b"bb")
    queue.write(b"ccc")
    assert transport.value() == b"a"
    assert queue.pending_bytes == 5 and queue.pending == [b"bb", b"ccc"]
    transport.producer.resumeProducing()
    assert transport.value() == b"abbccc"
    assert queue.pending_bytes == 0 and queue.pending == []
    queue.write(b"d")
    assert transport.value() == b"abbcccd"
    assert overflows == []


def test_exactly_the_limit_fits():
    transport, queue, overflows = make(limit=10)
    queue.pauseProducing()
    queue.write(b"x" * 4)
    queue.write(b"y" * 6)
    assert queue.pending_bytes == 10 and overflows == []


def test_overflow_closes_without_ever_holding_more_than_the_limit():
    transport, queue, overflows = make(limit=100)
    queue.pauseProducing()
    seen = []
    for _ in range(50):
        queue.write(b"z" * 7)
        seen.append(queue.pending_bytes)
    assert max(seen) <= 100
    assert queue.peak_bytes == 98  # 14 writes of 7 fit, the 15th does not
    assert len(overflows) == 1  # called once, however many writes follow
    assert queue.closed and queue.pending == [] and queue.pending_bytes == 0
    # nothing more is written, even after a resume
    queue.resumeProducing()
    queue.write(b"late")
    assert transport.value() == b""


def test_one_write_bigger_than_the_limit_overflows():
    transport, queue, overflows = make(limit=10)
    queue.pauseProducing()
    queue.write(b"q" * 11)
    assert len(overflows) == 1 and queue.peak_bytes == 0


def test_stop_producing_drops_everything():
    transport, queue, overflows = make(limit=100)
    queue.pauseProducing()
    queue.write(b"abc")
    queue.stopProducing()
    assert queue.closed and queue.pending_bytes == 0
    queue.resumeProducing()
    queue.write(b"def")
    assert transport.value() == b"" and overflows == []


def test_flow_control_on_a_separate_transport():
    """A wrapper (telnet) writes, the TCP transport underneath pauses and resumes."""
    tcp = StringTransport()
    written: list[bytes] = []

    class Wrapper:
        def write(self, data):
            written.append(data)

        def writeSequence(self, seq):
            written.extend(seq)

    queue = SendQueue(Wrapper(), 50, SimpleNamespace(send_queue_overflow=lambda: None), flow=tcp)
    assert tcp.producer is queue
    tcp.producer.pauseProducing()
    queue.write(b"held")
    assert written == []
    tcp.producer.resumeProducing()
    assert written == [b"held"]
