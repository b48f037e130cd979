"""Garbage in, SelectorError out: compile_selector never fails any other way."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from inventory import Host, compile_selector
from protocol.errors import SelectorError

HOST = Host(name="web-1", address="10.0.0.1", port=4022, user="u", tags={"name": "web-1"})

# Pieces of the language, so generated text often gets deep into the parser instead of
# failing at the first character.
PIECES = st.sampled_from(
    [" ", "(", ")", ",", "=", "!=", "~", "!~", "!", "'", '"', "and", "or", "not", "in", "all",
     "name", "env", "prod", "web-*", "[", "]", "^", "a{9", "*", "?", "\\", "é", "\t"]
)  # fmt: skip
SELECTOR_LIKE = st.lists(st.one_of(PIECES, st.text(max_size=3)), max_size=25).map("".join)


def _compiles_or_selector_error(text: str) -> None:
    try:
        selector = compile_selector(text)
    except SelectorError as err:
        assert 1 <= err.column <= len(text) + 1
        assert err.selector == text
        return
    assert isinstance(selector.matches(HOST), bool)


@settings(max_examples=400)
@given(st.text())
def test_any_text(text: str) -> None:
    _compiles_or_selector_error(text)


@settings(max_examples=800)
@given(SELECTOR_LIKE)
def test_selector_like_text(text: str) -> None:
    _compiles_or_selector_error(text)
