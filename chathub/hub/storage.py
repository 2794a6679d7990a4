"""How the store's failures reach protocols: as ``HubError`` codes, like every refusal.

The hub is the only layer above the store that knows its exceptions. Whatever a protocol
asks of storage through the hub (history, account registration) fails with one of these
instead, so protocols never import the store:

- ``AccountExists`` -> ``errors.AccountExists`` (``account_exists``), its target the name;
- ``UnknownReference`` -> ``errors.NoSuchMessage`` (``no_such_message``), its target the msgid;
- any other ``StorageError`` -> ``errors.StorageFailed`` (``storage_failed``), its message
  the store's (fit for people: it names what could not be done, never a secret).

Anything else (a bug, or a ``ValueError`` for a malformed history reference) passes unchanged.
"""
from __future__ import annotations

from twisted.python.failure import Failure

from chathub.hub import errors
from chathub.store.interfaces import AccountExists, StorageError, UnknownReference


def as_hub_error(failure: Failure) -> Failure:
    """``failure`` as protocols may see it: a storage failure becomes its ``HubError``.

    Meant as an errback: the result is returned (not raised), so the chain stays failed.
    """
    e = failure.value
    if isinstance(e, AccountExists):
        return Failure(errors.AccountExists(e.name, str(e)))
    if isinstance(e, UnknownReference):
        return Failure(errors.NoSuchMessage(e.msgid, str(e)))
    if isinstance(e, StorageError):
        return Failure(errors.StorageFailed("", str(e)))
    return failure
