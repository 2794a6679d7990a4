"""A real redis-server for the tests, on a free port of 127.0.0.1, never the one on 6379.

``RedisServer.start()`` runs ``redis-server`` without persistence (``--save '' --appendonly
no``), so ``kill()`` then ``restart()`` on the same port is a Redis that lost its data.
redis-server must be installed (scripts/test installs Debian's); without it the fixtures
fail, they do not skip.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from pathlib import Path
from typing import Optional

#: seconds a redis-server has to answer PING after it was started
READY_TIMEOUT = 15.0


def _unused_port() -> int:
    """A port of 127.0.0.1 that nothing listens on right now. redis-server cannot be given
    port 0 (that turns TCP off), so it is given one of these; another process may take it
    first, and ``RedisServer.start`` then tries another."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _encode(args: tuple[str, ...]) -> bytes:
    return f"*{len(args)}\r\n".encode() + b"".join(
        f"${len(a.encode())}\r\n".encode() + a.encode() + b"\r\n" for a in args
    )


def redis_command(port: int, *args: str, password: Optional[str] = None, db: int = 0, timeout: float = 5.0) -> bytes:
    """Send one command to 127.0.0.1:``port`` (after AUTH and SELECT when asked) and return
    its reply: a simple or bulk reply's bytes (b"PONG"; b"" for nil), an error as b"-ERR ...",
    an integer as its digits."""
    setup = ([("AUTH", password)] if password is not None else []) + ([("SELECT", str(db))] if db else [])
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"".join(_encode(c) for c in setup) + _encode(args))
        replies = s.makefile("rb")
        for _ in range(len(setup) + 1):
            line = replies.readline()
            if not line.endswith(b"\r\n"):
                raise OSError(f"redis on port {port} closed the connection")
            head = line[:-2]
            if head[:1] == b"$":
                size = int(head[1:])
                reply = b"" if size < 0 else replies.read(size + 2)[:-2]
            else:
                reply = head if head[:1] == b"-" else head[1:]
        return reply


class RedisServer:
    """One redis-server process of the test session."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port: Optional[int] = None
        self.process: Optional[subprocess.Popen] = None
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise RuntimeError("redis-server is not installed (scripts/test installs Debian's redis-server)")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        """Start on a free port; another port is tried when the chosen one was taken."""
        for _ in range(5):
            port = _unused_port()
            if self._spawn(port):
                self.port = port
                return self
        raise RuntimeError(f"redis-server did not start; its log:\n{self.log_text()}")

    def restart(self) -> None:
        """Start again on the same port after ``kill`` (empty: no persistence). The killed
        process was reaped, so its listening socket is closed; Redis binds with
        SO_REUSEADDR, so the port is free at once."""
        assert self.port is not None and self.process is None
        if not self._spawn(self.port):
            raise RuntimeError(f"redis-server did not restart on port {self.port}:\n{self.log_text()}")

    def kill(self) -> None:
        """SIGKILL: Redis vanishes at once, as in a crash."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()
        self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.kill()

    def command(self, *args: str, password: Optional[str] = None, db: int = 0) -> bytes:
        assert self.port is not None
        return redis_command(self.port, *args, password=password, db=db)

    def log_text(self) -> str:
        path = self.workdir / "redis.log"
        return path.read_text(errors="replace") if path.exists() else "(no log)"

    def _spawn(self, port: int) -> bool:
        """Run redis-server on ``port``; True once it says it accepts connections, False
        if it exited first (the port was taken, most likely: the caller tries another).

        Its output is read by a thread that copies it to ``redis.log`` and sets an event
        on the ready line or at the end of the output: the start is waited for on that
        event, with a timeout, never by polling."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        process = subprocess.Popen(
            [
                self.binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.workdir), "--daemonize", "no", "--protected-mode", "yes",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        settled = threading.Event()
        ready: list[bool] = []

        def copy_output() -> None:
            assert process.stdout is not None
            with open(self.workdir / "redis.log", "ab") as log:
                for line in process.stdout:
                    log.write(line)
                    log.flush()
                    if b"Ready to accept connections" in line and not ready:
                        ready.append(True)
                        settled.set()
            settled.set()  # the output ended: the process exited

        threading.Thread(target=copy_output, daemon=True).start()
        if settled.wait(READY_TIMEOUT) and ready:
            self.process = process
            return True
        process.kill()
        process.wait()
        return False
