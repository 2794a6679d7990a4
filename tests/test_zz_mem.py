import gc, socket, tracemalloc
import pytest_twisted
from twisted.internet import reactor, defer, task
from tests.support import HubServer

N = 400

@pytest_twisted.ensureDeferred
async def test_mem():
    server = HubServer()
    try:
        port = server.irc_port
        socks = []
        # warm
        for i in range(20):
            s = socket.create_connection(("127.0.0.1", port)); s.setblocking(False)
            s.send(f"NICK warm{i}\r\nUSER u 0 * :u\r\n".encode()); socks.append(s)
        await task.deferLater(reactor, 0.5, lambda: None)
        gc.collect()
        tracemalloc.start(1)
        snap1 = tracemalloc.take_snapshot()
        for i in range(N):
            s = socket.create_connection(("127.0.0.1", port)); s.setblocking(False)
            s.send(f"NICK n{i}\r\nUSER u 0 * :u\r\n".encode()); socks.append(s)
            if i % 50 == 0:
                await task.deferLater(reactor, 0.05, lambda: None)
        for _ in range(40):
            await task.deferLater(reactor, 0.05, lambda: None)
            for s in socks:
                try: s.recv(65536)
                except BlockingIOError: pass
        assert len(server.hub.users) >= N
        gc.collect()
        snap2 = tracemalloc.take_snapshot()
        stats = snap2.compare_to(snap1, "lineno")
        total = sum(st.size_diff for st in stats)
        print(f"\nTOTAL {total/N:.0f} bytes per connection (python allocations)")
        for st in stats[:25]:
            f = st.traceback[0]
            print(f"{st.size_diff/N:8.1f} B/conn {st.count_diff/N:5.2f} obj/conn  {f.filename.split('site-packages/')[-1].replace('/work/main/','')}:{f.lineno}")
        tracemalloc.stop()
        for s in socks: s.close()
    finally:
        await server.stop()
