"""``chathub.names``: the one casemapping (ASCII) every part of the hub folds names with."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from chathub.names import fold

ASCII_ONLY = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=30) | st.text(alphabet=st.characters(max_codepoint=127), max_size=30))
def test_fold_maps_a_to_z_alone(name):
    """A-Z become a-z and nothing else changes: not Ä, not the Kelvin sign, not İ, whose
    ``lower`` would; an already folded name comes back as the same object."""
    folded = fold(name)
    assert folded == name.translate(ASCII_ONLY)
    if folded == name:
        assert folded is name


def test_fold_leaves_non_ascii_letters_alone():
    assert fold("#ÄbC\u212a\u0130") == "#Äbc\u212a\u0130"
    assert fold("ALICE") == "alice"
