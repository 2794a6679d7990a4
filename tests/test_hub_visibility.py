"""Who may see which rooms and users: the hub's one set of rules every protocol asks.

Secret (+s/+p) rooms are known only to their members; invisible (+i) users only to those
sharing a room with them (RFC 2812 3.2.5 and 3.6.1, Modern IRC's invisible user mode).
"""
from __future__ import annotations

import pytest

from tests.support import RecorderWorld


@pytest.fixture
def world() -> RecorderWorld:
    return RecorderWorld()


def nicks(members) -> list[str]:
    return sorted(m.user.nick for m in members)


@pytest.fixture
def scene(world):
    """#pub holds pat (visible) and ivy (+i); #side holds ivy and sam; olga is in no room."""
    hub = world.hub
    pat, ivy, sam, olga = (world.connect(n) for n in ("pat", "ivy", "sam", "olga"))
    hub.change_user_modes(ivy, [("+i", None)])
    hub.join(pat, "#pub")
    hub.join(ivy, "#pub")
    hub.join(ivy, "#side")
    hub.join(sam, "#side")
    return hub, pat, ivy, sam, olga


def test_members_see_every_member_including_invisible_ones(scene):
    hub, pat, ivy, sam, olga = scene
    assert nicks(hub.visible_members(pat, hub.find_room("#pub"))) == ["ivy", "pat"]


def test_outsiders_do_not_see_invisible_members(scene):
    hub, pat, ivy, sam, olga = scene
    assert nicks(hub.visible_members(olga, hub.find_room("#pub"))) == ["pat"]
    assert nicks(hub.visible_members(None, hub.find_room("#pub"))) == ["pat"]


def test_sharing_another_room_makes_an_invisible_user_visible(scene):
    hub, pat, ivy, sam, olga = scene
    # sam is not in #pub, but shares #side with ivy
    assert nicks(hub.visible_members(sam, hub.find_room("#pub"))) == ["ivy", "pat"]


def test_visible_users_applies_the_shared_room_rule(scene):
    hub, pat, ivy, sam, olga = scene
    everyone = ["ivy", "olga", "pat", "sam"]
    assert sorted(u.nick for u in hub.visible_users(olga)) == ["olga", "pat", "sam"]
    assert sorted(u.nick for u in hub.visible_users(sam)) == everyone
    assert sorted(u.nick for u in hub.visible_users(ivy)) == everyone  # one sees oneself
    hub.part(ivy, "#side")
    assert "ivy" not in [u.nick for u in hub.visible_users(sam)]
    hub.change_user_modes(ivy, [("-i", None)])
    assert "ivy" in [u.nick for u in hub.visible_users(sam)]


def test_secret_rooms_are_known_only_to_members(scene):
    hub, pat, ivy, sam, olga = scene
    hub.change_room_modes(pat, "#pub", [("+s", None)])
    assert hub.visible_room(pat, "#PUB") is hub.find_room("#pub")
    assert hub.visible_room(olga, "#pub") is None
    # sharing #side with ivy shows no one of a secret room sam is not in
    assert hub.visible_members(sam, hub.find_room("#pub")) == []
    assert [r.name for r in hub.list_rooms(olga)] == ["#side"]
    assert sorted(r.name for r in hub.list_rooms(pat)) == ["#pub", "#side"]


def test_private_rooms_count_as_secret(scene):
    hub, pat, ivy, sam, olga = scene
    hub.change_room_modes(pat, "#pub", [("+p", None)])
    assert hub.visible_room(olga, "#pub") is None
    assert not hub.may_see_room(olga, hub.find_room("#pub"))
    assert hub.may_see_room(ivy, hub.find_room("#pub"))


def test_unknown_rooms_are_not_visible(world):
    alice = world.connect("alice")
    assert world.hub.visible_room(alice, "#nowhere") is None
