"""The realm: turns an authenticated avatar id into a hub ``User`` bound to its connection."""
from __future__ import annotations

from typing import TYPE_CHECKING

from zope.interface import implementer

from twisted.cred.portal import IRealm

from chathub.auth.checkers import GUEST
from chathub.auth.cloak import HostCloak, canonical_address
from chathub.hub.users import User
from chathub.interfaces import IChatUser

if TYPE_CHECKING:
    from chathub.hub.service import ChatHub
    from chathub.interfaces import IParticipant


class Logout:
    """The logout a login hands back: the connection's session closes, and the user
    quits the hub unless it has other sessions (``[auth] multiclient``).

    A three-slot object, not a closure: one exists per logged-in connection, and a lambda
    with its cells costs four times the memory. A connection that joined an account's user
    as one more session (``ChatHub.sign_on`` gave another user) takes ``for_user``'s."""

    __slots__ = ("hub", "user", "session")

    def __init__(self, hub: "ChatHub", user: User, session: "IParticipant") -> None:
        self.hub = hub
        self.user = user
        self.session = session

    def for_user(self, user: User) -> "Logout":
        """The logout of this connection's session of ``user`` (itself for its own user)."""
        return self if user is self.user else Logout(self.hub, user, self.session)

    def __call__(self) -> None:
        self.hub.quit(self.user, "Connection closed", self.session)


@implementer(IRealm)
class ChatRealm:
    """Hands out ``User`` avatars; the mind is the connection's ``IParticipant``.

    This is the one place that decides what host a user shows: the cloak of the
    connection's ``address`` (``chathub.auth.cloak``), worked out once per login; the
    address itself is kept as ``User.ip`` for operators and for the user."""

    def __init__(self, hub: "ChatHub", cloak: HostCloak) -> None:
        self.hub = hub
        self.cloak = cloak

    def requestAvatar(self, avatarId, mind, *interfaces):
        if IChatUser not in interfaces:
            raise NotImplementedError("chathub only hands out IChatUser avatars")
        account = None
        if avatarId is not GUEST and avatarId != GUEST:
            account = avatarId.decode("utf-8") if isinstance(avatarId, bytes) else str(avatarId)
        # a mind that is no connection (a script's login) has no address: host "" shows "localhost"
        ip = canonical_address(getattr(mind, "address", None) or "")
        user = User(mind, account=account, host=self.cloak.host_for(ip), ip=ip)
        return IChatUser, user, Logout(self.hub, user, mind)
