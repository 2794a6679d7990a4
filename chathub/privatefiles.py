"""Files only the server's own user may read: the database holds password hashes and private
messages, the data directory holds the database and the password file.

New ones are created private (0700 directories, 0600 files) whatever the process umask; old
ones that others could read are tightened and the caller is told, so it can say so in the log.
"""
from __future__ import annotations

import os
import stat

DIRECTORY_MODE = 0o700
FILE_MODE = 0o600


def private_directory(path: str) -> bool:
    """Make ``path`` (and missing parents) a directory only its owner can enter.

    Returns True when an existing directory was open to others and has been tightened.
    Raises ``OSError`` as ``os.makedirs`` does."""
    if not os.path.isdir(path):
        os.makedirs(path, mode=DIRECTORY_MODE, exist_ok=True)
        os.chmod(path, DIRECTORY_MODE)  # makedirs' mode is filtered by the umask
        return False
    return _tighten(path)


def private_file(path: str) -> bool:
    """Create ``path`` empty and private if it is missing, or take group and other
    permissions away from it. Returns True when an existing file was tightened."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return _tighten(path)
    os.close(fd)
    os.chmod(path, FILE_MODE)
    return False


def tighten_if_present(path: str) -> bool:
    """Take group and other permissions away from ``path`` if it exists."""
    try:
        return _tighten(path)
    except FileNotFoundError:
        return False


def _tighten(path: str) -> bool:
    current = stat.S_IMODE(os.stat(path).st_mode)
    if not current & 0o077:
        return False
    os.chmod(path, current & 0o700)
    return True
