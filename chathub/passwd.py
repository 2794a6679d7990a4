"""Add or change a user in chathub's argon2 password file, or print a hash for the config.

    python -m chathub.passwd FILE USER      # asks for the password twice
    python -m chathub.passwd --hash          # prints an argon2 hash (for [[irc.operators]])

The password is read from the terminal (or one line of standard input when it is not a
terminal); it never appears on the command line, where other users could see it.
"""
from __future__ import annotations

import argparse
import getpass
import os
import sys
import tempfile

from argon2 import PasswordHasher

from chathub.names import fold, valid_nick


def _read_password(confirm: bool) -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if confirm and getpass.getpass("Again: ") != first:
        raise SystemExit("passwords differ; nothing changed")
    return first


def set_password(path: str, user: str, password: str) -> None:
    """Write ``user``'s argon2 hash into ``path`` (atomically, mode 0600)."""
    hashed = PasswordHasher().hash(password)
    lines: list[str] = []
    try:
        with open(path, encoding="utf-8") as f:
            lines = [
                line.rstrip("\n")
                for line in f
                if not (":" in line and fold(line.split(":", 1)[0].strip()) == fold(user))
            ]
    except FileNotFoundError:
        pass
    lines.append(f"{user}:{hashed}")
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".passwd.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chathub.passwd", description=__doc__.split("\n")[0])
    parser.add_argument("--hash", action="store_true", help="only print a hash of the password")
    parser.add_argument("file", nargs="?", help="the password file (auth.passwords_file)")
    parser.add_argument("user", nargs="?", help="the account (nick) to add or change")
    args = parser.parse_args(argv)
    if args.hash:
        print(PasswordHasher().hash(_read_password(confirm=True)))
        return 0
    if not args.file or not args.user:
        parser.error("FILE and USER are needed (or --hash)")
    if not valid_nick(args.user, 30):
        parser.error(f"{args.user!r} is not a valid nick")
    password = _read_password(confirm=True)
    if not password:
        raise SystemExit("empty password; nothing changed")
    set_password(args.file, args.user, password)
    print(f"{args.user} saved in {args.file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
