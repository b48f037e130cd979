"""Parameter validation is total (issue 11, point 9): whatever JSON a signer puts in an action,
every module's ``validate`` gives a typed ParamError or a valid value, never another exception
(``a{4294967295}`` raised OverflowError and a thousand nested groups RecursionError in Python's
regex compiler: the agent's handler died with no reply and the console printed a traceback).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modules.base import Module
from modules.registry import all_modules
from protocol.errors import ParamError

MODULES = all_modules()

#: Text rich in what regexes, sizes, ages, paths, hashes and addresses are made of.
TEXT = st.text(alphabet="()[]{}|*+?\\^$.,:=!<>-/a0189fF kMdsx\n\x00é\udcff", max_size=40)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**31 - 2, max_value=2**64 + 2),
    st.floats(allow_nan=True),
    TEXT,
    st.text(max_size=20),
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=12,
)
#: Patterns that broke Python's regex compiler, and patterns RE2 refuses.
NASTY_PATTERNS = [
    "a{4294967295}",
    "a{99999999999999999999}",
    "(" * 1000 + "a" + ")" * 1000,
    "(" * 5000 + "a" + ")" * 5000,
    "[" * 1000,
    "(a)\\1",
    "(?=a)",
    "(?<=a)b",
    "\\p{Nope}",
    "(?P<n>a)(?P=n)",
    "((a{1000}){1000}){1000}",
]
NASTY = st.sampled_from(NASTY_PATTERNS)


def raw_params(module: Module) -> st.SearchStrategy[Any]:
    """JSON objects keyed mostly by the module's own parameters, with values of any shape."""
    names = [p.name for p in module.params] or ["x"]
    value = st.one_of(JSON, NASTY, st.lists(st.one_of(NASTY, TEXT), max_size=3))
    keys = st.one_of(st.sampled_from(names), st.text(max_size=6))
    base = st.just(dict(module.example))
    return st.one_of(
        st.builds(lambda b, extra: {**b, **extra}, base, st.dictionaries(keys, value, max_size=4)),
        st.dictionaries(keys, value, max_size=6),
        JSON,
    )


@pytest.mark.parametrize("module", MODULES, ids=[m.name for m in MODULES])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_validation_gives_a_typed_error_or_a_valid_value(module: Module, data: Any) -> None:
    raw = data.draw(raw_params(module))
    try:
        valid = module.validate(raw)
    except ParamError as err:
        assert str(err).startswith(f"{module.name}: ")
        assert "\n" not in str(err).split(": ", 1)[0]
        return
    assert set(valid) == {p.name for p in module.params}
    given_params = {p.name: valid[p.name] for p in module.params if valid[p.name] is not None}
    assert module.validate(given_params) == valid  # what validated validates again, the same


@pytest.mark.parametrize("module", MODULES, ids=[m.name for m in MODULES])
def test_every_regex_parameter_takes_the_nasty_patterns_typed(module: Module) -> None:
    for param in module.params:
        if param.kind not in ("regex", "mode", "mac"):
            continue
        for pattern in NASTY_PATTERNS:
            value = [pattern] if param.repeatable else pattern
            try:
                module.validate({**module.example, param.name: value})
            except ParamError as err:
                assert f"{param.name}" in str(err)
