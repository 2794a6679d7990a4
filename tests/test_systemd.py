"""systemd socket activation, as conf/chathub.socket does it: listening sockets made by someone
else, passed to twistd as descriptors 3, 4, ... with LISTEN_FDS and LISTEN_PID (the pid of the
process that reads them) and LISTEN_FDNAMES, and named in the config as
``systemd:domain=INET:index=N`` (or ``name=`` a socket unit's FileDescriptorName).

The launcher here does what systemd does between fork and exec: it moves the sockets to 3 and
up, sets the two variables with its own pid, and execs twistd (exec keeps the pid)."""
from __future__ import annotations

import socket
import sys
from pathlib import Path

from tests.support import LineClient, TwistdServer, server_config

#: systemd's part (argv: COUNT FD... NAMES COMMAND...): descriptors to 3, 4, ...; LISTEN_FDS,
#: LISTEN_PID and LISTEN_FDNAMES (every systemd since 227 sets it, and Twisted ignores the
#: descriptors without it); exec the command
LAUNCHER = (
    "import fcntl, os, sys\n"
    "count = int(sys.argv[1])\n"
    "fds = [int(fd) for fd in sys.argv[2:2 + count]]\n"
    "moved = [fcntl.fcntl(fd, fcntl.F_DUPFD, 3 + count) for fd in fds]\n"  # out of the way of 3, 4, ...
    "for i, fd in enumerate(moved):\n"
    "    os.dup2(fd, 3 + i)\n"
    "    os.close(fd)\n"
    "os.environ.update(LISTEN_FDS=str(count), LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES=sys.argv[2 + count])\n"
    "argv = sys.argv[3 + count:]\n"
    "os.execv(argv[0], argv)\n"
)


def _listening() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(128)
    return s


def test_twistd_serves_sockets_passed_by_systemd(tmp_path: Path):
    line, irc = _listening(), _listening()
    config = server_config(
        tmp_path / "var", line="systemd:domain=INET:index=0", irc="systemd:domain=INET:name=irc"
    )
    fds = (line.fileno(), irc.fileno())
    server = TwistdServer(
        tmp_path / "server", config,
        launcher=(sys.executable, "-c", LAUNCHER, "2", *map(str, fds), "line:irc"), pass_fds=fds,
    )
    try:
        server.start()
        # the server holds its own copies: ours can go, as systemd's stay with the socket unit
        ports = line.getsockname()[1], irc.getsockname()[1]
        line.close()
        irc.close()
        client = LineClient(ports[0])
        client.expect("Welcome to")
        client.send("/nick alice")
        client.expect("you are alice")
        ircc = LineClient(ports[1])
        ircc.send("NICK bob")
        ircc.send("USER b 0 * :B")
        ircc.expect(r" 001 bob ")
        client.close()
        ircc.close()
    finally:
        server.stop()
    assert server.exceptions == []
