"""Host cloaking: the host other users see is a keyed hash of the connection's address.

As Ergo, InspIRCd and UnrealIRCd do, a user's address is shown to everyone else as a cloak,
HMAC-SHA256 of the address under a server secret, so nobody learns where a user connects from
and nobody who lacks the secret can turn a cloak back into an address (all of IPv4 is only
2^32 guesses, so the secret is what protects it). The cloak has three labels and a suffix,
most specific first like a host name::

    IPv4 a.b.c.d      hash(a.b.c.d/32) . hash(a.b.c.0/24) . hash(a.b.0.0/16) . <suffix>
    IPv6              hash(/128)       . hash(/64)        . hash(/48)        . <suffix>
    anything else     hash(the text)                                         . <suffix>

so a ban on ``*!*@*.<2nd>.<3rd>.<suffix>`` covers a whole /24 (IPv4) or /64 (IPv6, where one
household or one privacy-extension user lives). The same address always gives the same cloak
under one secret, and a different secret gives different cloaks. Server operators and the
user themself see the address (``User.ip``); everyone else sees ``User.host``.

The realm (``chathub.auth.realm``) cloaks once per login, never per message. The secret is
read at start-up (``open_cloak``): ``[privacy] cloak_secret``, or the file
``cloak_secret_file`` made 0600 with a random secret on first start. It is never logged.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import os
import secrets
import sys
from typing import TYPE_CHECKING, Any, Optional, Union

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from chathub.config.privacy import MIN_SECRET_CHARS, PrivacyConfig
from chathub.privatefiles import private_file

if TYPE_CHECKING:
    from chathub.config import Config

#: random bytes in a generated secret (written as hex)
SECRET_BYTES = 32
#: hex digits per label: 32 bits, so two networks share a label about once in 4 billion
LABEL_HEX = 8
#: prefix lengths hashed into the three labels, most specific first
WIDTHS = {4: (32, 24, 16), 6: (128, 64, 48)}
#: addresses whose hosts a ``HostCloak`` keeps (about 150 bytes each)
MADE_KEPT = 4096

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

log = Logger()


class CloakSecretError(Exception):
    """The cloak secret file cannot be read or made, or holds too short a secret."""


def parse_address(text: str) -> Optional[IPAddress]:
    """``text`` as an IP address (an IPv4-mapped IPv6 address as the IPv4 one), or None."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


# remembered for the last addresses (a pure function of the text): every login asks, from
# few addresses at a time, and the parse was 2.8 us of a registration's ~100
@functools.lru_cache(maxsize=MADE_KEPT)
def canonical_address(text: str) -> str:
    """``text`` in one spelling per address (``::ffff:1.2.3.4`` -> ``1.2.3.4``, ``0::1`` ->
    ``::1``); text that is no IP address (a UNIX socket's peer) as it is."""
    ip = parse_address(text)
    if ip is None:
        return text
    canonical = str(ip)
    return text if canonical == text else canonical  # keep the connection's own string


def as_host(address: str) -> str:
    """``address`` as the host part of ``nick!user@host``: never beginning with ':', which IRC
    would read as the start of a message's last parameter (``::1`` -> ``0::1``)."""
    return "0" + address if address.startswith(":") else address


class HostCloak:
    """Turns a connection's address into the host every other user sees."""

    __slots__ = ("_mac", "suffix", "enabled", "_made")

    def __init__(self, secret: bytes, suffix: str = "cloak", enabled: bool = True) -> None:
        # one keyed state, copied per label: the key is hashed into it once, here
        self._mac = hmac.new(secret, digestmod=hashlib.sha256)
        self.suffix = suffix
        self.enabled = enabled
        #: the hosts made lately, by address: three HMACs and an address parse were a tenth
        #: of a registration, and connections come from few addresses at a time (at most
        #: ``MADE_KEPT``, emptied when full)
        self._made: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"<HostCloak *.{self.suffix} {'on' if self.enabled else 'off'}>"  # never the secret

    def rekey(self, secret: bytes) -> None:
        """Key the cloak with ``secret`` from now on (the cluster's shared one, taken at
        start-up before anyone connects: ``share_cloak_secret``)."""
        self._mac = hmac.new(secret, digestmod=hashlib.sha256)
        self._made = {}

    def host_for(self, address: str) -> str:
        """The host shown for ``address`` ("" for an unknown address): its cloak, or with
        cloaking off the address itself (as a host part, see ``as_host``).

        Users from one address share one string (interned, and kept for the latest
        ``MADE_KEPT`` addresses)."""
        if not address:
            return ""
        if not self.enabled:
            return as_host(address)
        made = self._made.get(address)
        if made is None:
            if len(self._made) >= MADE_KEPT:
                self._made.clear()
            made = self._made[address] = self._make(address)
        return made

    def _make(self, address: str) -> str:
        ip = parse_address(address)
        if ip is None:
            labels = [self._label(b"name", address.encode("utf-8", "surrogatepass"))]
        else:
            bits = ip.max_prefixlen
            number = int(ip)
            labels = [
                self._label(
                    b"%d/%d" % (ip.version, width),
                    (number >> (bits - width) << (bits - width)).to_bytes(bits // 8, "big"),
                )
                for width in WIDTHS[ip.version]
            ]
        labels.append(self.suffix)
        return sys.intern(".".join(labels))

    def _label(self, kind: bytes, data: bytes) -> str:
        mac = self._mac.copy()
        mac.update(kind + b":" + data)  # the kind keeps a /24's label apart from a /32's
        return mac.hexdigest()[:LABEL_HEX]


def build_cloak(privacy: PrivacyConfig, secret: Optional[bytes] = None) -> HostCloak:
    """A cloak keyed with ``secret``, else ``[privacy] cloak_secret``, else a random key for
    this process only (its cloaks change at every start: for tests and embedding; the server
    reads or makes its kept secret with ``open_cloak``)."""
    if secret is None:
        secret = privacy.cloak_secret.encode("utf-8") if privacy.cloak_secret else os.urandom(SECRET_BYTES)
    return HostCloak(secret, privacy.cloak_suffix, privacy.cloak_hosts)


def open_cloak(config: "Config") -> HostCloak:
    """The server's cloak, at start-up: its secret from ``[privacy] cloak_secret`` or the
    secret file, made on first start. Raises ``CloakSecretError`` naming the file."""
    privacy = config.privacy
    if not privacy.cloak_hosts:
        log.info("host cloaking is off ([privacy] cloak_hosts): every user sees the others' addresses")
        return build_cloak(privacy)
    if privacy.cloak_secret:
        log.info("hosts are cloaked as *.{suffix}, keyed by [privacy] cloak_secret", suffix=privacy.cloak_suffix)
        return build_cloak(privacy)
    path = config.data_path(privacy.cloak_secret_file)
    secret = load_secret(path)
    log.info("hosts are cloaked as *.{suffix}, keyed by the secret in {path}", suffix=privacy.cloak_suffix, path=path)
    return build_cloak(privacy, secret)


def share_cloak_secret(cloak: HostCloak, config: "Config", store: Any) -> Deferred[None]:
    """A cluster node's cloak, keyed like every other node's: one address must have one
    cloak on every node (else a ban on a cloak is dodged by reconnecting to another node,
    and the kernel picks the node). Unless ``[privacy] cloak_secret`` says the secret, the
    nodes key it with the one kept in the store they share (``IStore.shared_secret``): the
    first node's secret file's, so a single node made a cluster keeps its cloaks."""
    privacy = config.privacy
    if not privacy.cloak_hosts or privacy.cloak_secret:
        return succeed(None)
    path = config.data_path(privacy.cloak_secret_file)
    own = load_secret(path).hex()  # the file's bytes, whatever they are, as text

    def take(shared: str) -> None:
        cloak.rekey(bytes.fromhex(shared))
        log.info("hosts are cloaked with the cluster's secret ({whose})",
                 whose="this node's" if shared == own else "another node's, kept in the database")

    return store.shared_secret("cloak", own).addCallback(take)


def load_secret(path: str) -> bytes:
    """The secret kept in ``path``; on first start (a missing or empty file) a random one is
    written there. The file is made readable by the server's user only (0600), and one that
    others could read is tightened, with a warning."""
    try:
        tightened = private_file(path)
        with open(path, "r+b") as f:
            secret = f.read(4096).strip()
            if not secret:
                secret = secrets.token_hex(SECRET_BYTES).encode("ascii")
                f.write(secret + b"\n")
                f.flush()
                os.fsync(f.fileno())
                log.info("made a new cloak secret in {path}", path=path)
    except OSError as e:
        raise CloakSecretError(f"cannot read or make the cloak secret file {path}: {e.strerror}") from None
    if tightened:
        log.warn(
            "the cloak secret file {path} was readable by other users of this machine, who could "
            "turn cloaks back into addresses with it; it is now private (0600)",
            path=path,
        )
    if len(secret) < MIN_SECRET_CHARS:
        raise CloakSecretError(
            f"the cloak secret file {path} holds fewer than {MIN_SECRET_CHARS} characters; "
            "delete it to have a new secret made (every cloak then changes)"
        )
    return secret
