"""[privacy] settings: what other users learn about a connection's address."""
from __future__ import annotations

from dataclasses import dataclass

from chathub.config.schema import ConfigError

#: shortest secret accepted (characters): a short one could be guessed, and with it every cloak
#: turned back into its address by hashing the whole IPv4 space
MIN_SECRET_CHARS = 16

#: what a label of ``cloak_suffix`` may hold: a host-name label, so the cloak is a host everywhere
_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")


@dataclass(frozen=True)
class PrivacyConfig:
    """[privacy]: host cloaking (the host other users see is a keyed hash of the address)."""

    #: show a cloak instead of the address to other users (server operators and the user
    #: themself still see the address)
    cloak_hosts: bool = True
    #: the cloak's last label(s): ``3f2a9c1b.77d0e4a2.5be19c03.<suffix>``
    cloak_suffix: str = "cloak"
    #: the key of the hash, for several servers that must give the same cloaks; empty: the
    #: secret file (never logged either way)
    cloak_secret: str = ""
    #: where the secret is kept when ``cloak_secret`` is empty: made (0600) with a random
    #: secret on first start, relative to ``server.data_dir`` unless absolute
    cloak_secret_file: str = "cloak.key"

    def validate(self, prefix: str) -> None:
        prefix = prefix or "privacy"
        labels = self.cloak_suffix.split(".")
        if len(self.cloak_suffix) > 63 or not all(label and set(label) <= _LABEL_CHARS for label in labels):
            raise ConfigError(
                f"setting '{prefix}.cloak_suffix' must be host-name labels (letters, digits, '-') "
                f"joined by dots, at most 63 characters, not {self.cloak_suffix!r}"
            )
        if self.cloak_secret and len(self.cloak_secret) < MIN_SECRET_CHARS:
            # the value itself is never part of the message: it is a secret
            raise ConfigError(
                f"setting '{prefix}.cloak_secret' must be at least {MIN_SECRET_CHARS} characters "
                "(or empty, to keep a generated one in cloak_secret_file)"
            )
        if not self.cloak_secret_file:
            raise ConfigError(f"setting '{prefix}.cloak_secret_file' must not be empty")
