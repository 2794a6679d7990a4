"""Hypothesis stateful tests of the hub: any interleaving of what users may ask keeps its invariants.

A ``RuleBasedStateMachine`` drives one in-process ``ChatHub`` (``tests.support.RecorderWorld``, with
its ``Recorder`` participants) through register/nick/quit/join/part/kick/invite/mode/topic/
away/send/monitor/oper/kill/wallops/account-registration calls by users drawn from a small
pool of nicks and room names in every case (``amy``/``AMY``/``aMy``), so collisions are the
rule. After every step it checks:

- the nick map: ``hub.users[fold(nick)] is user`` for every user, each user once;
- rooms and members agree both ways (one member record per user per room, each member a
  registered user whose ``rooms`` lists the room, and every room a user lists has them);
- nobody who quit (or was killed) is anywhere: users, rooms, members, watchers, invites;
- the watchers map and each user's ``monitoring`` agree; operators only among members;
  empty rooms that are not registered are gone; LUSERS counts equal a recount;
- every refused call raises a ``HubError`` (any other exception fails the test) and leaves
  the hub exactly as it was, with nothing delivered to anyone;
- nothing runs for a user who is not in the hub (quit, killed, never registered): each call
  is refused or changes nothing and delivers nothing;
- each event reached exactly the users who could see it then (a room's members at the time,
  a quitter's neighbours, a nick's watchers, ...), each once; joins past +i/+k/+l/+b were
  allowed by the rules (a key, an invite given to that very user, an exception).

``CHATHUB_FUZZ_EXAMPLES`` sets how many examples to run (100 by default, a few seconds);
``CHATHUB_FUZZ_EXAMPLES=2000`` is a long run.
"""
from __future__ import annotations

import os
from typing import Callable, Iterable, Optional

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, multiple, rule
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.internet.defer import Deferred
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.failure import Failure

from chathub.auth.checkers import CheckerDirectory
from chathub.config import Config
from chathub.events import Event, Kind
from chathub.hub import errors
from chathub.hub.rooms import Room
from chathub.hub.service import ChatHub
from chathub.hub.users import User
from chathub.names import fold, is_room_name
from tests.support import Recorder, RecorderWorld

EXAMPLES = int(os.environ.get("CHATHUB_FUZZ_EXAMPLES", "100"))
STEPS = 50

#: the account the hub's directory knows: guests may not take its nick
ACCOUNT = "owner"
MAX_ROOMS_PER_USER = 3
MAX_BANS = 2
MASK_LENGTH = 20


def recase(text: str, bits: int) -> str:
    """``text`` with the letters whose bit is set in ``bits`` in upper case."""
    return "".join(c.upper() if bits >> i & 1 else c.lower() for i, c in enumerate(text))


def cased(names: st.SearchStrategy) -> st.SearchStrategy[str]:
    """The names ``names`` draws (a strategy or a bundle), each letter in either case:
    Amy, AMY and amy are one nick."""
    return st.tuples(names, st.integers(0, 63)).map(lambda t: recase(*t))


# a few names, repeated so collisions are frequent, and some the hub must refuse
NICKS = ("amy", "bo", "cy", "dee")
ROOMS = ("#a", "#bc", "#d")
nicks = cased(st.sampled_from(NICKS + NICKS + (ACCOUNT, "nickserv", "1x", "a b", "")))
room_names = cased(st.sampled_from(ROOMS + ROOMS + ("nohash", "#b c")))
texts = st.text(max_size=4)
masks = st.one_of(
    st.sampled_from(("*!*@*", "amy", "AMY!*@*", "*!*@example.org", "*!*@*.NET", "bo*", "!", "@", "*",
                     "m:amy", "m:*!*@*.net", f"a:{ACCOUNT}", f"m:a:{ACCOUNT.upper()}", "x:y", "a:")),
    st.text(max_size=MASK_LENGTH + 4),
)
keys = st.sampled_from(("key", "KEY", "a b", ""))
hosts = st.sampled_from(("example.org", "dial.example.net"))
ROOM_CHAT = (Kind.MESSAGE, Kind.ACTION, Kind.NOTICE, Kind.TAGMSG)
IDENTITY = (Kind.AWAY, Kind.SETNAME, Kind.CHGHOST, Kind.ACCOUNT)

REFUSED = object()


def settled(d: Deferred):
    """The result of a Deferred that has fired already; its failure is raised."""
    outcome: list = []
    d.addBoth(outcome.append)
    (result,) = outcome
    if isinstance(result, Failure):
        result.raiseException()
    return result


def held_nicks(users: Bundle) -> st.SearchStrategy[str]:
    """The nick a user of the bundle holds now, in any case ("" for one who never had one)."""
    return cased(users.map(lambda u: u.nick or ""))


class View:
    """Who could see what at one moment: the hub's memberships and watchers, by user identity."""

    def __init__(self, hub: ChatHub) -> None:
        self.users = dict(hub.users)
        self.members = {f: {id(m.user) for m in r.members.values()} for f, r in hub.rooms.items()}
        self.ops = {
            f: {id(m.user) for m in r.members.values() if m.is_operator} for f, r in hub.rooms.items()
        }
        self.watchers = {f: {id(w) for w in s} for f, s in hub.watchers.items()}
        self.rooms_of = {id(u): set(u.rooms) for u in hub.users.values()}
        self.wallops = {id(u) for u in hub.users.values() if "w" in u.modes}

    def neighbours(self, user: User) -> set[int]:
        seen = {id(user)}
        for name in self.rooms_of.get(id(user), ()):
            seen |= self.members.get(name, set())
        return seen


def snapshot(hub: ChatHub) -> tuple:
    """Everything a refused call must leave as it was."""
    users = {
        k: (
            id(u), u.nick, u.folded, u.modes, u.privileges, u.away, u.account, u.realname,
            u.user, u.host, tuple(sorted(u.rooms)), frozenset(u._monitoring or ()),
        )
        for k, u in hub.users.items()
    }
    rooms = {
        k: (
            id(r), r.name, frozenset(r.modes), r.key, r.limit, r.topic, r.topic_setter, r.topic_time,
            tuple(r.bans), tuple(r.excepts), tuple(r.invex), frozenset(r.invited),
            tuple((f, id(m.user), m.privileges) for f, m in r.members.items()),
            r.persistent, frozenset(r.operators),
        )
        for k, r in hub.rooms.items()
    }
    watchers = {k: frozenset(map(id, s)) for k, s in hub.watchers.items()}
    counts = {k: v for k, v in hub._user_mode_counts.items() if v}
    return users, rooms, watchers, counts, len(hub.whowas_log), hub.max_users_seen


class HubMachine(RuleBasedStateMachine):
    """Users and rooms of one hub, driven by Hypothesis."""

    users = Bundle("users")
    rooms = Bundle("rooms")

    def __init__(self) -> None:
        super().__init__()
        config = Config().with_overrides(
            limits={"max_rooms_per_user": MAX_ROOMS_PER_USER, "mask_length": MASK_LENGTH},
            irc={"max_bans": MAX_BANS},
            # one session per user: the model counts what each user's one participant got;
            # several sessions of an account (attach, detach, echo to the others) are
            # tests/test_multiclient.py's
            auth={"multiclient": False},
        )
        self.world = RecorderWorld(config)
        self.hub = self.world.hub
        # the directory ``--auth memory:owner:pw`` gives: ``owner`` is an account's nick
        self.hub.accounts = CheckerDirectory([InMemoryUsernamePasswordDatabaseDontUse(**{ACCOUNT: b"pw"})])
        self.everyone: list[User] = []  # every user ever made, present or not
        self.invites: set[tuple[Room, User]] = set()  # invites given and not yet used
        self.failures: list[dict] = []
        globalLogPublisher.addObserver(self._observe)

    def _observe(self, event: dict) -> None:
        bad = (LogLevel.error, LogLevel.critical)
        if event.get("log_failure") is not None or event.get("log_level") in bad:
            self.failures.append(event)

    def teardown(self) -> None:
        globalLogPublisher.removeObserver(self._observe)

    # -- helpers -----------------------------------------------------------------------

    def present(self, user: User) -> bool:
        return user.folded is not None and self.hub.users.get(user.folded) is user

    def marks(self) -> list[int]:
        return [len(u.participant.sent) for u in self.everyone]

    def received(self, marks: list[int]) -> tuple[dict[str, list[User]], dict[str, Event]]:
        """Event id -> every user who was sent it since ``marks`` (once per copy), and
        event id -> event."""
        got: dict[str, list[User]] = {}
        events: dict[str, Event] = {}
        for user, mark in zip(self.everyone, marks):
            for data in user.participant.sent[mark:]:
                event = user.participant.codec[data]
                events[event.id] = event
                got.setdefault(event.id, []).append(user)
        return got, events

    def audience(self, event: Event, actor: User, before: View, after: View) -> set[int]:
        """Who should have been sent ``event`` that ``actor`` caused: those who could see it."""
        skip = set() if actor.participant.echo_own else {id(actor)}
        kind, target = event.kind, fold(event.target)
        if kind in ROOM_CHAT:
            if is_room_name(event.target):
                return before.members[target] - skip
            return {id(actor), id(before.users[target])} - skip
        if kind == Kind.JOIN:
            return after.members[target] - skip
        if kind in (Kind.PART, Kind.KICK):
            return before.members[target] - skip
        if kind in (Kind.TOPIC, Kind.MODE):
            return after.members[target] - skip
        if kind == Kind.RENAME:  # the same members, under the new name
            return after.members[fold(event.data["new"])] - skip
        if kind in (Kind.NICK, Kind.QUIT):
            return before.neighbours(actor) - skip
        if kind == Kind.INVITE:
            invited = before.users[fold(event.data["nick"])]
            return {id(invited)} | (after.ops.get(target, set()) - {id(actor)})
        if kind in IDENTITY:
            watching = before.watchers.get(actor.folded, set()) - {id(actor)}
            return (before.neighbours(actor) - skip) | watching
        if kind == Kind.PRESENCE:
            return before.watchers.get(target, set()) - {id(actor)}
        if kind == Kind.WALLOPS:
            return before.wallops - skip
        raise AssertionError(f"unexpected {kind} event {event}")

    def call(
        self,
        actor: Optional[User],
        fn: Callable,
        *args,
        presence: Iterable[tuple[str, str]] = (),
        actor_of: Optional[dict] = None,
        registering: bool = False,
    ):
        """Run one hub call as ``actor``; check refusals, ghosts and who got what.

        ``presence`` lists the (folded nick, state) presence events the call must cause;
        ``actor_of`` names, per event kind, a different user as its cause (a KILL's QUIT);
        ``registering``: the call is ``register``, the one an absent user may make."""
        ghost = not registering and not self.present(actor)
        before, state, marks = View(self.hub), snapshot(self.hub), self.marks()
        try:
            result = fn(*args)
        except errors.HubError as e:
            assert snapshot(self.hub) == state, f"{fn.__name__} refused ({e.code}) but changed the hub"
            assert not self.received(marks)[0], f"{fn.__name__} refused ({e.code}) but delivered"
            return REFUSED
        got, events = self.received(marks)
        if ghost:
            assert snapshot(self.hub) == state, f"{fn.__name__} ran for {actor!r}, who is not in the hub"
            assert not got, f"{fn.__name__} delivered for {actor!r}, who is not in the hub"
            return result
        after = View(self.hub)
        actor_of = actor_of or {}
        if isinstance(result, Event):
            events.setdefault(result.id, result)
            got.setdefault(result.id, [])
        for event_id, receivers in got.items():
            event = events[event_id]
            ids = [id(u) for u in receivers]
            assert len(ids) == len(set(ids)), f"{event.kind} sent twice to one user"
            cause = actor_of.get(event.kind, actor)
            expected = self.audience(event, cause, before, after)
            assert set(ids) == expected, (
                f"{event.kind} {event.target!r} went to {sorted(u.nick or '?' for u in receivers)}, "
                f"not to those who could see it"
            )
        subject = actor_of.get(Kind.PRESENCE, actor)
        for folded, state_name in presence:
            audience = before.watchers.get(folded, set()) - {id(subject)}
            if audience:
                assert any(
                    events[i].kind == Kind.PRESENCE
                    and fold(events[i].target) == folded
                    and events[i].data["state"] == state_name
                    for i in got
                ), f"watchers of {folded} not told {state_name}"
        return result

    def sign_on(self, user: User, nick: str):
        """``user`` asks for its first nick."""
        presence = [(fold(nick), "online")]
        return self.call(user, self.hub.sign_on, user, nick, presence=presence, registering=True)

    def room_for(self, data, user: User, name: str) -> str:
        """Half the time one of ``user``'s own rooms (in any case), else ``name``."""
        mine = sorted(user.rooms)
        if mine and data.draw(st.booleans()):
            return data.draw(cased(st.sampled_from(mine)))
        return name

    def member_of(self, data, name: str, nick: str) -> str:
        """Half the time a member of room ``name`` (in any case), else ``nick``."""
        room = self.hub.rooms.get(fold(name))
        if room is not None and room.members and data.draw(st.booleans()):
            return data.draw(cased(st.sampled_from(sorted(room.members))))
        return nick

    def operator_of(self, data, name: str, user: User) -> User:
        """Half the time an operator of room ``name`` acts instead of ``user``."""
        room = self.hub.rooms.get(fold(name))
        ops = [m.user for m in room.members.values() if m.is_operator] if room is not None else []
        if ops and data.draw(st.booleans()):
            return data.draw(st.sampled_from(ops))
        return user

    def forget_invites(self, user: User) -> None:
        """``user`` quit or took another nick: the invites it had named its old nick."""
        self.invites = {(r, u) for r, u in self.invites if u is not user}

    # -- rules: identity ---------------------------------------------------------------

    @initialize(target=users, names=st.lists(cased(st.sampled_from(NICKS)), min_size=2, max_size=4),
                room=room_names)
    def crowd(self, names, room):
        """Each run starts with a few connections (their nicks may collide) in a room."""
        crowd = [self.connect(name, None, "example.org", "a", False) for name in names]
        for user in crowd:
            self.join(user, room, None)
        return multiple(*crowd)

    @initialize(target=rooms, name=cased(st.sampled_from(ROOMS)))
    def first_room(self, name):
        return name

    @rule(target=users, nick=nicks, account=st.sampled_from((None, None, None, ACCOUNT)),
          host=hosts, format_key=st.sampled_from("ab"), echo_own=st.booleans(),
          keep=st.sampled_from((True, False, False, False)), room=st.one_of(st.none(), rooms))
    def connect(self, nick, account, host, format_key, echo_own, keep=True, room=None):
        """A new connection registers a nick; one refused stays, now and then, as a
        connection that never registered (and asks the hub for things all the same)."""
        user = User(Recorder(self.world.codec, format_key, echo_own), account=account, user="u", host=host)
        self.everyone.append(user)
        holder = self.hub.users.get(fold(nick))
        result = self.sign_on(user, nick)
        if result is not REFUSED:
            assert holder is None and self.present(user) and user.nick == nick
            if room is not None:  # joins at once, as clients that auto-join do
                self.join(user, room, None)
        return user if result is not REFUSED or keep else multiple()

    @rule(user=users, nick=nicks)
    def register_again(self, user, nick):
        """Registering once more: refused for anyone who ever held a nick."""
        was_registered = user.signed_on
        result = self.sign_on(user, nick)
        if was_registered:
            assert result is REFUSED
        else:
            assert result is REFUSED or self.present(user)

    @rule(user=users, nick=st.one_of(nicks, held_nicks(users)))
    def nick(self, user, nick):
        """A change of nick (or only of its case, which keeps invites and presence)."""
        old = user.folded
        renamed = old is not None and fold(nick) != old
        presence = [(old, "offline"), (fold(nick), "online")] if renamed else []
        result = self.call(user, self.hub.change_nick, user, nick, presence=presence)
        if result is not REFUSED and result is not None and renamed:
            self.forget_invites(user)

    @rule(target=users, user=users, reason=texts, again=st.booleans())
    def quit(self, user, reason, again):
        """Quit (always accepted, a no-op the second time); ``again``: a new connection
        takes the same nick at once, while the old user object lingers in the bundle."""
        was_present = self.present(user)
        nick, folded = user.nick, user.folded
        result = self.call(user, self.hub.quit, user, reason,
                           presence=[(folded, "offline")] if was_present else [])
        assert result is not REFUSED, "quit is never refused"
        assert (result is not None) == was_present
        if not was_present:
            return multiple()
        self.forget_invites(user)
        if not again:
            return multiple()
        return self.connect(nick, user.account, user.host, "b", not user.participant.echo_own)

    @rule(
        user=users,
        what=st.sampled_from(("away", "back", "setname", "chghost", "modes")),
        text=texts,
        host=hosts,
        changes=st.lists(
            st.tuples(st.sampled_from(("+i", "-i", "+w", "-w", "+B", "-o", "+o", "+x")), st.none()),
            max_size=3,
        ),
    )
    def identity(self, user, what, text, host, changes):
        """Away and back, a new real name or host, the user's own modes."""
        hub = self.hub
        if what == "away":
            self.call(user, hub.set_away, user, text)
        elif what == "back":
            self.call(user, hub.set_away, user, None)
        elif what == "setname":
            self.call(user, hub.set_realname, user, text)
        elif what == "chghost":
            self.call(user, hub.set_host, user, "u", host)
        else:
            self.call(user, hub.change_user_modes, user, changes)

    @rule(user=users, what=st.sampled_from(("oper", "kill", "wallops")),
          whom=st.one_of(held_nicks(users), nicks), text=texts)
    def server_operator(self, user, what, whom, text):
        """OPER (the hub trusts the protocol's password check), KILL and WALLOPS."""
        if what == "oper":
            self.call(user, self.hub.make_operator, user, ("kill", "wallops"))
        elif what == "wallops":
            self.call(user, self.hub.wallops, user, text)
        else:
            victim = self.hub.users.get(fold(whom))
            folded = victim.folded if victim is not None else ""
            result = self.call(user, self.hub.kill, user, whom, text, presence=[(folded, "offline")],
                               actor_of={Kind.QUIT: victim, Kind.PRESENCE: victim})
            if result is not REFUSED:
                assert result is victim and victim.participant.closed is not None
                self.forget_invites(victim)

    @rule(user=users, watch=st.one_of(st.none(), st.lists(nicks, max_size=3)), stop=st.booleans())
    def monitor(self, user, watch, stop):
        """MONITOR + (a list), MONITOR - (a list) or MONITOR C (``watch`` None)."""
        if stop or watch is None:
            self.call(user, self.hub.unmonitor, user, watch)
        else:
            self.call(user, self.hub.monitor, user, watch)

    @rule(user=users, password=st.sampled_from(("pw", "secret")))
    def create_account(self, user, password):
        """Without a store the hub has no account_creator: refused, as a HubError, changing nothing."""

        def create_account():
            return settled(self.hub.create_account(user, password))

        assert self.call(user, create_account) is REFUSED

    # -- rules: rooms ------------------------------------------------------------------

    @rule(target=rooms, name=room_names)
    def name_room(self, name):
        return name

    @rule(user=users, name=cased(rooms), key=st.one_of(st.none(), keys))
    def join(self, user, name, key):
        room = self.hub.rooms.get(fold(name))
        rules = None
        if room is not None and self.present(user) and user.folded not in room.members:
            invited = (room, user) in self.invites
            rules = {
                "key": room.key is None or key == room.key,
                "invite": "i" not in room.modes or invited or room.is_invite_excepted(user),
                "limit": room.limit is None or len(room.members) < room.limit or invited,
                "ban": not room.is_banned(user) or invited,
            }
            room_count = len(user.rooms)
        result = self.call(user, self.hub.join, user, name, key)
        if rules is not None:
            if result is REFUSED:
                full = room_count >= MAX_ROOMS_PER_USER
                assert full or not all(rules.values()), "a join the rules allow was refused"
            else:
                assert all(rules.values()), f"joined past {[k for k, v in rules.items() if not v]}"
        if result is not REFUSED and result is not None:
            self.invites.discard((result, user))

    @rule(user=users, name=cased(rooms), reason=texts, data=st.data())
    def part(self, user, name, reason, data):
        name = self.room_for(data, user, name)
        room = self.hub.rooms.get(fold(name))
        was_member = room is not None and self.present(user) and user.folded in room.members
        result = self.call(user, self.hub.part, user, name, reason)
        assert (result is not REFUSED) == was_member, "part refused to a member, or done for a non-member"

    @rule(user=users, name=cased(rooms),
          whom=st.one_of(held_nicks(users), nicks), reason=texts, data=st.data())
    def kick(self, user, name, whom, reason, data):
        name = self.room_for(data, user, name)
        user = self.operator_of(data, name, user)
        whom = self.member_of(data, name, whom)
        room = self.hub.rooms.get(fold(name))
        member = room.members.get(user.folded or "") if room is not None else None
        allowed = member is not None and member.is_operator and fold(whom) in room.members
        result = self.call(user, self.hub.kick, user, name, whom, reason)
        if result is not REFUSED:
            assert allowed, "a kick by someone who is no operator, or of a non-member"

    @rule(user=users, name=cased(rooms), whom=st.one_of(held_nicks(users), nicks), data=st.data())
    def invite(self, user, name, whom, data):
        name = self.room_for(data, user, name)
        user = self.operator_of(data, name, user)
        room = self.hub.rooms.get(fold(name))
        invited = self.hub.users.get(fold(whom))
        result = self.call(user, self.hub.invite, user, name, whom)
        if result is not REFUSED and room is not None:
            self.invites.add((room, invited))

    @rule(user=users, name=cased(rooms), text=texts, data=st.data())
    def topic(self, user, name, text, data):
        name = self.room_for(data, user, name)
        user = self.operator_of(data, name, user)
        room = self.hub.rooms.get(fold(name))
        member = room.members.get(user.folded or "") if room is not None else None
        allowed = member is not None and ("t" not in room.modes or member.is_operator)
        result = self.call(user, self.hub.set_topic, user, name, text)
        if result is not REFUSED:
            assert allowed, "a topic set by someone the room's rules refuse"

    @rule(user=users, name=cased(rooms), new=st.one_of(room_names, cased(rooms)), data=st.data())
    def rename(self, user, name, new, data):
        name = self.room_for(data, user, name)
        user = self.operator_of(data, name, user)
        room = self.hub.rooms.get(fold(name))
        member = room.members.get(user.folded or "") if room is not None else None
        taken = self.hub.rooms.get(fold(new))
        allowed = (
            member is not None and member.is_operator and new != room.name and is_room_name(new) and " " not in new
            and (taken is None or taken is room)
        )
        result = self.call(user, self.hub.rename_room, user, name, new)
        if result is not REFUSED:
            assert allowed, "a rename the rules refuse was made"
            assert self.hub.rooms[fold(new)] is room and room.name == new

    @rule(
        user=users,
        name=cased(rooms),
        changes=st.lists(
            st.one_of(
                st.tuples(st.sampled_from(("+i", "-i", "+m", "-m", "+n", "-n", "+t", "-t", "+s", "-s", "+C")),
                          st.none()),
                st.tuples(st.sampled_from(("+o", "-o", "+v", "-v")),
                          st.one_of(held_nicks(users), nicks)),
                st.tuples(st.sampled_from(("+k", "-k")), st.one_of(st.none(), keys)),
                st.tuples(st.just("+l"), st.sampled_from(("1", "2", "0", "-1", "x", ""))),
                st.tuples(st.just("-l"), st.none()),
                st.tuples(st.sampled_from(("+b", "-b", "+e", "-e", "+I", "-I")), masks),
                st.tuples(st.sampled_from(("+z", "-q")), st.none()),
            ),
            max_size=4,
        ),
        data=st.data(),
    )
    def mode(self, user, name, changes, data):
        name = self.room_for(data, user, name)
        user = self.operator_of(data, name, user)
        room = self.hub.rooms.get(fold(name))
        member = room.members.get(user.folded or "") if room is not None else None
        allowed = member is not None and member.is_operator and self.present(user)
        result = self.call(user, self.hub.change_room_modes, user, name, changes)
        if result is not REFUSED:
            assert allowed, "modes changed by someone who is no operator"
            applied, refused = result
            assert all(isinstance(e, errors.HubError) for e in refused)

    @rule(
        user=users,
        to=st.one_of(cased(rooms), held_nicks(users), nicks),
        text=st.one_of(texts, st.just("\x01VERSION\x01")),
        kind=st.sampled_from(ROOM_CHAT),
        data=st.data(),
    )
    def send(self, user, to, text, kind, data):
        to = self.room_for(data, user, to) if is_room_name(to) else to
        room = self.hub.rooms.get(fold(to)) if is_room_name(to) else None
        allowed = True
        if room is not None:
            member = room.members.get(user.folded or "")
            voiced = member is not None and member.is_voiced
            allowed = (member is not None or "n" not in room.modes) and (
                voiced or ("m" not in room.modes and not room.is_banned(user) and not room.is_muted(user))
            )
        result = self.call(user, self.hub.send, user, to, text, kind)
        if result is not REFUSED:
            assert allowed, "a message the room's rules refuse was delivered"

    # -- invariants --------------------------------------------------------------------

    @invariant()
    def nick_map_is_consistent(self):
        hub = self.hub
        assert len({id(u) for u in hub.users.values()}) == len(hub.users), "one user under two nicks"
        for key, user in hub.users.items():
            assert user.nick is not None and key == user.folded == fold(user.nick), f"{user!r} under {key!r}"

    @invariant()
    def rooms_and_members_agree(self):
        hub = self.hub
        for key, room in hub.rooms.items():
            assert key == room.folded == fold(room.name)
            assert room.members or room.persistent, f"empty room {room.name} is still there"
            assert room.persistent or not room.operators, f"guest room {room.name} has stored operators"
            users = {id(m.user) for m in room.members.values()}
            assert len(users) == len(room.members), f"a user with two member records in {room.name}"
            for folded, member in room.members.items():
                assert hub.users.get(folded) is member.user, f"{folded} in {room.name} is no user of the hub"
                assert member.user.rooms.get(key) is room, f"{folded} in {room.name}, which it does not list"
                assert set(member.privileges) <= {"o", "v"}
            if room._recipients is not None:
                assert sorted(map(id, room._recipients)) == sorted(id(m.user) for m in room.members.values())
            for folded in room.invited:
                assert folded in hub.users, f"{room.name} keeps an invite for {folded}, who is gone"
        for user in hub.users.values():
            for key, room in user.rooms.items():
                assert hub.rooms.get(key) is room, f"{user!r} lists {room.name}, which is not in the hub"
                assert room.members.get(user.folded) is not None and room.members[user.folded].user is user

    @invariant()
    def the_gone_are_nowhere(self):
        hub = self.hub
        for user in self.everyone:
            if self.present(user):
                continue
            assert all(u is not user for u in hub.users.values()), f"{user!r} is in the nick map"
            assert not user.rooms, f"{user!r} left the hub but still lists rooms"
            assert not user._monitoring, f"{user!r} left the hub but still monitors"
            assert all(user not in s for s in hub.watchers.values()), f"{user!r} left but watches"
            assert all(m.user is not user for r in hub.rooms.values() for m in r.members.values())

    @invariant()
    def watchers_agree(self):
        hub = self.hub
        for folded, watching in hub.watchers.items():
            assert watching, f"empty watcher set for {folded}"
            for watcher in watching:
                assert self.present(watcher), f"{watcher!r} watches {folded} but is not in the hub"
                assert folded in watcher.monitoring
        for user in hub.users.values():
            for folded in user._monitoring or ():
                assert user in hub.watchers.get(folded, ())

    @invariant()
    def lusers_counts_match_a_recount(self):
        for letter in "iowB":
            assert self.hub.users_with_mode(letter) == sum(letter in u.modes for u in self.hub.users.values())

    @invariant()
    def nothing_logged_as_a_failure(self):
        assert not self.failures, self.failures[0]


HubMachine.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
# a failing run spends minutes shrinking each failure it found: leave it the time to report them
TestHubMachine = pytest.mark.timeout(300 + EXAMPLES)(HubMachine.TestCase)


# -- what the machine found, as regression tests ----------------------------------------


def test_nothing_runs_for_a_user_after_quit():
    """A request read after a quit (JSON ``join`` after ``quit`` left a ghost operator in
    NAMES; ``nick`` after ``quit`` raised KeyError) is refused by the hub itself, changes
    nothing, reaches nobody, and never acts as whoever holds the nick now."""
    world = RecorderWorld()
    hub = world.hub
    ghost = world.connect("ghosty")
    hub.join(ghost, "#r")
    hub.make_operator(ghost, ["kill", "wallops"])
    hub.quit(ghost, "bye")
    honest = world.connect("GHOSTY")  # the nick's next holder, operator of #r now
    victim = world.connect("victim")
    hub.join(honest, "#r")
    hub.join(victim, "#r")
    hub.monitor(honest, ["victim"])
    world.clear()
    state = snapshot(hub)
    requests = [
        lambda: hub.join(ghost, "#new"),
        lambda: hub.join(ghost, "#r"),
        lambda: hub.change_nick(ghost, "other"),
        lambda: hub.part(ghost, "#r"),
        lambda: hub.send(ghost, "#r", "boo"),
        lambda: hub.send(ghost, "victim", "boo"),
        lambda: hub.set_topic(ghost, "#r", "mine"),
        lambda: hub.kick(ghost, "#r", "victim"),
        lambda: hub.invite(ghost, "#r", "victim"),
        lambda: hub.change_room_modes(ghost, "#r", [("+o", "victim")]),
        lambda: hub.set_away(ghost, "away"),
        lambda: hub.set_host(ghost, "u", "elsewhere"),
        lambda: hub.set_realname(ghost, "someone"),
        lambda: hub.set_account(ghost, "ghosty"),
        lambda: hub.make_operator(ghost, ["kill"]),
        lambda: hub.change_user_modes(ghost, [("+i", None)]),
        lambda: hub.wallops(ghost, "hello"),
        lambda: hub.kill(ghost, "victim", "bye"),
        lambda: hub.monitor(ghost, ["victim"]),
        lambda: settled(hub.create_account(ghost, "password")),
    ]
    for request in requests:
        with pytest.raises(errors.NotLoggedIn):
            request()
        assert snapshot(hub) == state
    assert hub.quit(ghost, "again") is None and hub.unmonitor(ghost) is None
    assert snapshot(hub) == state
    assert [p.sent for p in (honest.participant, victim.participant)] == [[], []]
    assert victim.participant.closed is None
    assert [m.user for m in hub.find_room("#r").members.values()] == [honest, victim]


def test_nothing_runs_for_a_user_who_never_registered():
    world = RecorderWorld()
    hub = world.hub
    bystander = world.connect("bystander")
    hub.join(bystander, "#r")
    hub.change_room_modes(bystander, "#r", [("-n", None)])
    stranger = User(Recorder(world.codec), user="s", host="example.org")
    world.clear()
    for request in (
        lambda: hub.join(stranger, "#r"),
        lambda: hub.send(stranger, "#r", "hi"),
        lambda: hub.send(stranger, "bystander", "hi"),
        lambda: hub.monitor(stranger, ["bystander"]),
        lambda: hub.invite(stranger, "#r", "bystander"),
    ):
        with pytest.raises(errors.NotLoggedIn):
            request()
    assert bystander.participant.sent == [] and not hub.watchers
    assert list(hub.find_room("#r").members) == ["bystander"]


def test_an_invite_does_not_pass_to_the_next_holder_of_the_nick():
    """An invite named bob: once bob quits or takes another nick it is gone, so whoever
    takes "BOB" next cannot walk into the +i room (nor past its limit or bans)."""
    world = RecorderWorld()
    hub = world.hub
    op, bob = world.connect("op"), world.connect("bob")
    room = hub.join(op, "#r")
    hub.change_room_modes(op, "#r", [("+i", None)])
    hub.invite(op, "#r", "bob")
    hub.quit(bob, "bye")
    assert room.invited == set()
    mallory = world.connect("BOB")
    with pytest.raises(errors.InviteOnly):
        hub.join(mallory, "#r")
    hub.invite(op, "#r", "bob")  # mallory, invited herself now, renames before joining
    hub.change_nick(mallory, "mallory")
    assert room.invited == set() and mallory.invited_to is None
    carol = world.connect("bob")
    with pytest.raises(errors.InviteOnly):
        hub.join(carol, "#r")
    hub.invite(op, "#r", "BOB")  # a change of case is the same nick: the invite stays
    hub.change_nick(carol, "Bob")
    assert hub.join(carol, "#r") is room


def test_a_refused_user_mode_change_changes_nothing():
    world = RecorderWorld()
    amy = world.connect("amy")
    with pytest.raises(errors.UnknownMode):
        world.hub.change_user_modes(amy, [("+i", None), ("+x", None)])
    assert amy.modes == frozenset() and world.hub.users_with_mode("i") == 0
