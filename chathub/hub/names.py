"""Names the hub keeps for itself: hub policy on top of the name rules of ``chathub.names``."""
from __future__ import annotations

#: nicks nobody may take: the IRC server's services (NickServ) answer to them
RESERVED_NICKS = frozenset({"nickserv"})
