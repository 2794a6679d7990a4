"""The one room-mode parser (IRC MODE and telnet /mode), driven by the hub's mode tables."""
from __future__ import annotations

from chathub.hub.modes import CHANMODES, ROOM_MODES, parse_room_modes
from chathub.hub.rooms import FLAG_MODES, LIST_MODES
from tests.support import line_world


def test_every_mode_the_hub_applies_is_parsed():
    assert FLAG_MODES | set(LIST_MODES) | set("kovl") == ROOM_MODES
    assert CHANMODES == "beI,k,l,Cimnpst"


def test_flags_parameters_and_unknown_letters():
    changes, queries, unknown = parse_room_modes("+mC-t+kl-lxo", ["key", "10", "bob"])
    assert changes == [("+m", None), ("+C", None), ("-t", None), ("+k", "key"), ("+l", "10"), ("-l", None), ("-o", "bob")]
    assert queries == [] and unknown == ["x"]


def test_list_modes_without_a_parameter_are_queries_once_each():
    changes, queries, unknown = parse_room_modes("+bIbe-e", ["*!*@evil"])
    assert changes == [("+b", "*!*@evil")]
    assert queries == ["I", "b", "e"]


def test_missing_parameters_drop_the_change_except_key_removal():
    changes, queries, _ = parse_room_modes("+ov+k+l-k", [])
    assert changes == [("-k", None)]
    assert parse_room_modes("-k", ["old"]).changes == [("-k", "old")]


def test_max_params_drops_the_excess():
    changes, _, _ = parse_room_modes("+vvvm", ["a", "b", "c"], max_params=2)
    assert changes == [("+v", "a"), ("+v", "b"), ("+m", None)]


def test_telnet_mode_sets_and_lists_exceptions():
    env = line_world()
    alice = env.line_conn("alice", "#r")
    alice.send("/mode #r +eI *!*@friend.example *!*@guest.example")
    assert alice.expect("you set mode") == "* you set mode +e *!*@friend.example +I *!*@guest.example on #r"
    alice.send("/mode #r +e")
    lines = alice.new_lines()
    assert lines[0].startswith("* #r ban exception *!*@friend.example (set by alice!")
    assert lines[-1] == "* end of the ban exception list of #r"
    alice.send("/mode #r I")
    assert alice.expect("invite exception").startswith("* #r invite exception *!*@guest.example")
    alice.send("/mode #r +Z")
    alice.expect("Z: unknown mode")
