"""SCRAM-SHA-256 (RFC 5802, RFC 7677) for SASL: the keys an account keeps, and the server's
side of the exchange.

An account keeps, beside its argon2 hash and never instead of it, what RFC 5802 lets a server
keep: a salt, an iteration count, ``StoredKey = H(ClientKey)`` and ``ServerKey``, derived from
the password once (at registration, a password change, or the first PLAIN login of an account
registered before SCRAM existed) in a thread. They prove a client knows the password without
the password crossing the wire; the password itself cannot be recovered from them except by
guessing, which costs ``iterations`` rounds of PBKDF2 per guess.

The exchange (``ScramExchange``) is plain data and parsing, no I/O: a protocol feeds it the
client's messages, asks the account's salt and iteration count (``IScramKeys.scram_parameters``,
a made-up pair for a name without keys so the answer does not tell which accounts exist), and
logs in through the portal with the ``ScramProof`` it makes; the checker verifies the proof
against the stored keys and leaves the server's signature on the credentials.

Channel binding is not offered (``n,,`` and ``y,,`` only). Names and passwords are prepared
with SASLprep (RFC 4013) as RFC 5802 asks; a name or password SASLprep refuses fails.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import stringprep
import unicodedata
from dataclasses import dataclass
from typing import Optional

from zope.interface import Attribute, Interface, implementer

from twisted.cred.credentials import ICredentials

MECHANISM = "SCRAM-SHA-256"
#: PBKDF2 rounds for new keys: RFC 7677's minimum, what Ergo and most clients use
ITERATIONS = 4096
#: the most rounds a stored key may ask a client for (a client computes them per login)
MAX_ITERATIONS = 100_000
SALT_BYTES = 16
#: the longest client nonce accepted (clients send 24 to 32 characters); it keeps the
#: server-first message within one 400-byte AUTHENTICATE chunk
MAX_NONCE = 128
_PREFIX = MECHANISM + "$"


class ScramError(ValueError):
    """A client message that does not follow RFC 5802, or a name or password SASLprep refuses."""


# -- SASLprep (RFC 4013) ------------------------------------------------------------------


def _prohibited(c: str) -> bool:
    return (
        stringprep.in_table_c12(c) or stringprep.in_table_c21_c22(c) or stringprep.in_table_c3(c)
        or stringprep.in_table_c4(c) or stringprep.in_table_c5(c) or stringprep.in_table_c6(c)
        or stringprep.in_table_c7(c) or stringprep.in_table_c8(c) or stringprep.in_table_c9(c)
    )


def saslprep(text: str) -> str:
    """``text`` prepared with SASLprep (stored strings: unassigned code points refused)."""
    if text.isascii() and text.isprintable():
        return text  # the common case: SASLprep changes nothing
    mapped = "".join(" " if stringprep.in_table_c12(c) else c for c in text if not stringprep.in_table_b1(c))
    prepared = unicodedata.normalize("NFKC", mapped)
    if any(_prohibited(c) or stringprep.in_table_a1(c) for c in prepared):
        raise ScramError("a prohibited character")
    if any(stringprep.in_table_d1(c) for c in prepared):
        # RFC 3454 section 6: right-to-left text has no left-to-right characters and
        # begins and ends with a right-to-left one
        if any(stringprep.in_table_d2(c) for c in prepared) or not (
            stringprep.in_table_d1(prepared[0]) and stringprep.in_table_d1(prepared[-1])
        ):
            raise ScramError("mixed-direction text")
    return prepared


# -- the keys ------------------------------------------------------------------------------


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


@dataclass(frozen=True)
class ScramKeys:
    """What an account keeps for SCRAM-SHA-256 (RFC 5802 section 5.1)."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    def encode(self) -> str:
        """The stored form (RFC 5803's): ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>``."""
        b64 = base64.b64encode
        return (
            f"{_PREFIX}{self.iterations}:{b64(self.salt).decode()}$"
            f"{b64(self.stored_key).decode()}:{b64(self.server_key).decode()}"
        )

    @classmethod
    def decode(cls, stored: str) -> Optional["ScramKeys"]:
        """The keys of a stored form, or None for a damaged one (the account then has none)."""
        if not stored.startswith(_PREFIX):
            return None
        try:
            params, keys = stored[len(_PREFIX):].split("$")
            iterations, salt = params.split(":")
            stored_key, server_key = keys.split(":")
            found = cls(base64.b64decode(salt, validate=True), int(iterations),
                        base64.b64decode(stored_key, validate=True), base64.b64decode(server_key, validate=True))
        except (ValueError, binascii.Error):
            return None
        if not 1 <= found.iterations <= MAX_ITERATIONS or len(found.stored_key) != 32 or len(found.server_key) != 32:
            return None
        return found


def derive_keys(password: str, salt: Optional[bytes] = None, iterations: int = ITERATIONS) -> ScramKeys:
    """The SCRAM-SHA-256 keys of ``password`` (blocking: PBKDF2, run it in a thread).
    Raises ``ScramError`` for a password SASLprep refuses."""
    if salt is None:
        salt = os.urandom(SALT_BYTES)
    salted = hashlib.pbkdf2_hmac("sha256", saslprep(password).encode("utf-8"), salt, iterations)
    client_key = _hmac(salted, b"Client Key")
    return ScramKeys(salt, iterations, hashlib.sha256(client_key).digest(), _hmac(salted, b"Server Key"))


def keys_or_none(password: str) -> Optional[str]:
    """The stored form of ``password``'s keys, or None when SASLprep refuses it (the account
    then logs in with PLAIN only); blocking."""
    try:
        return derive_keys(password).encode()
    except ScramError:
        return None


# -- credentials and the checker's side ---------------------------------------------------


class IScramProof(ICredentials):
    """A SCRAM client proof to check against an account's stored keys."""

    username = Attribute("The account name (str), as the client gave it.")

    def check(keys: ScramKeys) -> bool:
        """True when the proof matches ``keys``; the server signature is then kept."""


class IScramKeys(Interface):
    """Where an exchange gets an account's salt and iteration count (the store's checker)."""

    def scram_parameters(name: str):
        """Fires with ``(salt, iterations)`` for ``name``: its keys', or a made-up pair (the
        same every time for a name) when it has none."""


@implementer(IScramProof)
class ScramProof:
    """Credentials: the client's proof and the messages it signed. After a successful
    ``check``, ``server_signature`` is what the server sends back (``v=``)."""

    def __init__(self, username: str, auth_message: bytes, proof: bytes) -> None:
        self.username = username
        self.auth_message = auth_message
        self.proof = proof
        self.server_signature: Optional[bytes] = None

    def check(self, keys: ScramKeys) -> bool:
        client_signature = _hmac(keys.stored_key, self.auth_message)
        if len(self.proof) != len(client_signature):
            return False
        client_key = bytes(a ^ b for a, b in zip(self.proof, client_signature, strict=True))
        if not hmac.compare_digest(hashlib.sha256(client_key).digest(), keys.stored_key):
            return False
        self.server_signature = _hmac(keys.server_key, self.auth_message)
        return True


class MadeUpParameters:
    """A salt for names without keys that stays the same for the life of the process, so
    asking twice does not tell a real account from a made-up one by a changing salt."""

    def __init__(self) -> None:
        self._secret = secrets.token_bytes(32)

    def for_name(self, folded: str) -> tuple[bytes, int]:
        """``(salt, ITERATIONS)`` for a name that has no keys."""
        return _hmac(self._secret, folded.encode("utf-8"))[:SALT_BYTES], ITERATIONS


def keys_source(checker) -> Optional[IScramKeys]:
    """The ``IScramKeys`` behind the checker a portal has for ``IScramProof`` (itself, or one
    of the checkers an ``AnyOfCheckers`` tries), or None: SCRAM is not offered."""
    if checker is None:
        return None
    if IScramKeys.providedBy(checker):
        return checker
    return next((inner for inner in getattr(checker, "checkers", ()) if IScramKeys.providedBy(inner)), None)


# -- the exchange ----------------------------------------------------------------------------


def _attributes(message: str) -> list[tuple[str, str]]:
    """``a=value`` pairs of a SCRAM message, in order."""
    found = []
    for part in message.split(","):
        if len(part) < 2 or part[1] != "=":
            raise ScramError("malformed attribute")
        found.append((part[0], part[2:]))
    return found


def _decoded(message: bytes) -> str:
    try:
        return message.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ScramError("not UTF-8") from e


def _unescape_name(value: str) -> str:
    # RFC 5802 5.1: "," and "=" are sent as "=2C" and "=3D"; any other "=" is an error
    out = []
    i = 0
    while i < len(value):
        if value[i] == "=":
            code = value[i + 1:i + 3]
            if code not in ("2C", "3D"):
                raise ScramError("malformed name")
            out.append("," if code == "2C" else "=")
            i += 3
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


class ScramExchange:
    """The server's side of one SCRAM-SHA-256 exchange, as plain data.

    ``first(client_first)`` takes the client's first message and gives the name to look up;
    ``server_first(salt, iterations)`` the reply; ``final(client_final)`` checks the client's
    final message against the exchange and gives the ``ScramProof`` to log in with;
    ``server_final(proof)`` the last message. Each step raises ``ScramError`` for a message
    that does not fit."""

    __slots__ = ("gs2_header", "username", "client_nonce", "nonce", "client_first_bare", "server_first_message")

    def __init__(self) -> None:
        self.gs2_header = ""
        self.username = ""
        self.client_nonce = ""
        self.nonce = ""
        self.client_first_bare = ""
        self.server_first_message = ""

    def first(self, message: bytes) -> str:
        """Parse the client-first message; returns the account name (SASLprep'd)."""
        text = _decoded(message)
        cbind, sep, rest = text.partition(",")
        authzid, sep2, bare = rest.partition(",")
        if not sep or not sep2:
            raise ScramError("malformed client-first message")
        if cbind not in ("n", "y"):
            raise ScramError("channel binding is not supported")  # "p=..." asks for it
        attributes = _attributes(bare)
        if len(attributes) < 2 or attributes[0][0] != "n" or attributes[1][0] != "r":
            raise ScramError("malformed client-first message")
        if attributes[0][1] == "" or any(key == "m" for key, _ in attributes):
            raise ScramError("malformed client-first message")  # "m": a mandatory extension we lack
        username = saslprep(_unescape_name(attributes[0][1]))
        if authzid:
            if not authzid.startswith("a=") or saslprep(_unescape_name(authzid[2:])) != username:
                raise ScramError("authorization identity differs from the authentication identity")
        nonce = attributes[1][1]
        if not nonce or len(nonce) > MAX_NONCE or not all(33 <= ord(c) <= 126 and c != "," for c in nonce):
            raise ScramError("malformed nonce")
        self.gs2_header = f"{cbind},{authzid},"
        self.username = username
        self.client_nonce = nonce
        self.client_first_bare = bare
        return username

    def server_first(self, salt: bytes, iterations: int) -> bytes:
        """The server-first message for the account's ``salt`` and ``iterations``."""
        self.nonce = self.client_nonce + base64.b64encode(secrets.token_bytes(18)).decode()
        self.server_first_message = f"r={self.nonce},s={base64.b64encode(salt).decode()},i={iterations}"
        return self.server_first_message.encode()

    def final(self, message: bytes) -> ScramProof:
        """Parse the client-final message; the proof to check (through the portal)."""
        text = _decoded(message)
        without_proof, sep, proof_attr = text.rpartition(",")
        if not sep or not proof_attr.startswith("p="):
            raise ScramError("malformed client-final message")
        attributes = _attributes(without_proof)
        if len(attributes) < 2 or attributes[0][0] != "c" or attributes[1][0] != "r":
            raise ScramError("malformed client-final message")
        try:
            binding = base64.b64decode(attributes[0][1], validate=True)
            proof = base64.b64decode(proof_attr[2:], validate=True)
        except (ValueError, binascii.Error) as e:
            raise ScramError("malformed base64") from e
        if binding != self.gs2_header.encode("utf-8"):
            raise ScramError("channel binding data differs")
        if attributes[1][1] != self.nonce:
            raise ScramError("nonce differs")
        auth_message = f"{self.client_first_bare},{self.server_first_message},{without_proof}".encode()
        return ScramProof(self.username, auth_message, proof)

    @staticmethod
    def server_final(proof: ScramProof) -> bytes:
        """The server-final message (``v=<ServerSignature>``) of a proof that was accepted."""
        assert proof.server_signature is not None  # set by a successful check
        return b"v=" + base64.b64encode(proof.server_signature)


__all__ = [
    "MECHANISM",
    "ITERATIONS",
    "ScramError",
    "ScramKeys",
    "ScramExchange",
    "ScramProof",
    "IScramProof",
    "IScramKeys",
    "MadeUpParameters",
    "derive_keys",
    "keys_or_none",
    "keys_source",
    "saslprep",
]
