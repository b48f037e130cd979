"""Target selectors: each operator, precedence, quoting, unknown tags and error columns."""

from __future__ import annotations

import pytest

from inventory import Host, compile_selector
from protocol.errors import InventoryError, SelectorError


def _host(name: str, address: str, **tags: str) -> Host:
    return Host(name=name, address=address, port=4022, user="spyglass", tags={**tags, "name": name})


HOSTS = [
    _host("web-01", "10.0.0.1", env="prod", role="web"),
    _host("web-02", "10.0.0.2", env="dev", role="web"),
    _host("db-01", "10.0.1.1", env="prod", role="db"),
    _host("canary-web", "127.0.0.9", env="prod", role="web", os="linux"),
    _host("bare", "192.0.2.7"),
]


def pick(text: str) -> list[str]:
    selector = compile_selector(text)
    return [h.name for h in HOSTS if selector.matches(h)]


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("all", ["web-01", "web-02", "db-01", "canary-web", "bare"]),
        ("env=prod", ["web-01", "db-01", "canary-web"]),
        ("name=web-*", ["web-01", "web-02"]),
        ("name=web-0?", ["web-01", "web-02"]),
        ("name=web-0[2-9]", ["web-02"]),
        ("name=WEB-*", []),  # globs are case-sensitive
        ("name!=web-*", ["db-01", "canary-web", "bare"]),
        ("address=127.0.0.*", ["canary-web"]),
        ("address=10.0.0.1", ["web-01"]),
        ("role in (web, db)", ["web-01", "web-02", "db-01", "canary-web"]),
        ("name in (db-*, bare)", ["db-01", "bare"]),
        ("role not in (web)", ["db-01"]),
        ("name~'^canary'", ["canary-web"]),
        ("name~web", ["web-01", "web-02", "canary-web"]),
        ("name!~'^web'", ["db-01", "canary-web", "bare"]),
        ("role=web and env=prod", ["web-01", "canary-web"]),
        ("role=db or env=dev", ["web-02", "db-01"]),
        ("not env=prod", ["web-02", "bare"]),
        ("not not env=dev", ["web-02"]),
    ],
)
def test_operators(text: str, names: list[str]) -> None:
    assert pick(text) == names


def test_precedence_not_over_and_over_or() -> None:
    # or binds loosest: role=db or (env=dev and role=web)
    assert pick("role=db or env=dev and role=web") == ["web-02", "db-01"]
    # not binds tightest: (not env=prod) and role=web
    assert pick("not env=prod and role=web") == ["web-02"]
    assert pick("role=web and not env=prod or name=db-01") == ["web-02", "db-01"]


def test_parentheses_override_precedence() -> None:
    assert pick("(role=db or env=dev) and role=web") == ["web-02"]
    assert pick("not (env=prod or env=dev)") == ["bare"]
    assert pick("((role=db))") == ["db-01"]


def test_quoting() -> None:
    assert pick("env='prod'") == pick('env="prod"') == pick("env=prod")
    assert pick("role='and'") == []  # quoted keywords are values
    assert pick('name~"^(web|db)-0[1]$"') == ["web-01", "db-01"]
    assert pick('name~"^[^\']*$"') == [h.name for h in HOSTS]  # the other quote inside


def test_unknown_tag_matches_nothing_even_negated() -> None:
    assert pick("os=linux") == ["canary-web"]
    assert pick("os!=linux") == []  # hosts without an os tag are not selected
    assert pick("os!~linux") == []
    assert pick("os not in (linux)") == []
    assert pick("not os=linux") == ["web-01", "web-02", "db-01", "bare"]
    assert pick("nosuchtag=*") == []
    assert pick("env=*") == ["web-01", "web-02", "db-01", "canary-web"]  # has the tag at all


def test_keywords_are_values_after_an_operator() -> None:
    hosts = [_host("x", "1", mode="all"), _host("y", "2", mode="in")]
    for text, expected in [
        ("mode=all", ["x"]),
        ("mode=in", ["y"]),
        ("mode in (all, in)", ["x", "y"]),
    ]:
        selector = compile_selector(text)
        assert [h.name for h in hosts if selector.matches(h)] == expected


def test_whitespace_is_free() -> None:
    assert pick("  role = web\tand\nenv != prod ") == ["web-02"]
    assert pick("role in(web,db)and env=dev") == ["web-02"]


def test_selector_is_reusable_and_has_its_text() -> None:
    selector = compile_selector("env=prod")
    assert selector.text == "env=prod"
    assert repr(selector) == "Selector('env=prod')"
    assert [selector.matches(h) for h in HOSTS] == [True, False, True, True, False]


ERRORS = [
    ("", 1, "empty selector (use 'all' for every host)"),
    ("   ", 1, "empty selector (use 'all' for every host)"),
    ("env=", 5, "expected a value after '=', got the end of the selector"),
    ("env", 4, "expected an operator (=, !=, ~, !~, in) after 'env', got the end of the selector"),
    ("env prod", 5, "expected an operator (=, !=, ~, !~, in) after 'env', got 'prod'"),
    ("env==prod", 5, "expected a value after '=', got '='"),
    ("(env=prod", 10, "expected ')' to close the '(' at column 1, got the end of the selector"),
    ("(a=b or (c=d)", 14, "expected ')' to close the '(' at column 1, got the end of the selector"),
    ("env=prod)", 9, "unbalanced ')' (no '(' to close)"),
    ("env=prod env=dev", 10, "expected 'and', 'or' or the end, got 'env'"),
    ("env=prod and", 13, "expected a condition like env=prod, got the end of the selector"),
    ("env=prod and or a=b", 14, "expected a condition like env=prod, got 'or'"),
    ("not", 4, "expected a condition like env=prod, got the end of the selector"),
    ("()", 2, "expected a condition like env=prod, got ')'"),
    ("env='prod", 5, "unterminated string (no closing ')"),
    ('a=b and c="d', 11, 'unterminated string (no closing ")'),
    ("env=prod & role=web", 10, "unexpected character '&' (use 'and')"),
    ("a=b || c=d", 5, "unexpected character '|' (use 'or')"),
    ("!env=prod", 1, "unexpected character '!' (use 'not', '!=' or '!~')"),
    ("name~^web", 6, "unexpected character '^' (put a value that holds it in quotes)"),
    ("env=prod é", 10, "unexpected character 'é' (put a value that holds it in quotes)"),
    ("name~'it''s'", 10, "expected 'and', 'or' or the end, got \"'s'\""),
    ("web-*", 1, "'web-*' is not a tag name"),
    ("1env=x", 1, "'1env' is not a tag name"),
    ("role in web", 9, "expected '(' after 'in', got 'web'"),
    ("role in ()", 10, "expected a value in the list, got ')'"),
    ("role in (a,)", 12, "expected a value after ',', got ')'"),
    ("role in (a b)", 12, "expected ',' or ')' in the list, got 'b'"),
    ("role not web", 10, "expected 'in' after 'not', got 'web'"),
    ("'env'=prod", 1, "expected a condition like env=prod, got \"'env'\""),
    ("and=x", 1, "expected a condition like env=prod, got 'and'"),
    ("all all", 5, "expected 'and', 'or' or the end, got 'all'"),
]


@pytest.mark.parametrize(("text", "column", "message"), ERRORS)
def test_syntax_error_points_at_the_column(text: str, column: int, message: str) -> None:
    with pytest.raises(SelectorError) as caught:
        compile_selector(text)
    err = caught.value
    assert (err.column, err.selector) == (column, text)
    assert str(err).startswith(f"target selector, column {column}: {message}\n")


def test_error_renders_a_caret() -> None:
    with pytest.raises(SelectorError) as caught:
        compile_selector("env=prod )")
    assert str(caught.value).splitlines()[1:] == ["  env=prod )", "           ^"]


def test_selector_error_is_an_inventory_error() -> None:
    with pytest.raises(InventoryError):
        compile_selector("(")


@pytest.mark.parametrize(
    ("text", "column", "message"),
    [
        ("name~'^(ab'", 8, "bad regular expression: missing ), unterminated subpattern"),
        ('env=prod and name~"a**"', 22, "bad regular expression: multiple repeat"),
        ("name~'a{99999999999}'", 6, "bad regular expression: the repetition number is too large"),
    ],
)
def test_bad_regex_points_into_the_regex(text: str, column: int, message: str) -> None:
    with pytest.raises(SelectorError) as caught:
        compile_selector(text)
    assert caught.value.column == column
    assert str(caught.value).startswith(f"target selector, column {column}: {message}\n")


def test_deep_nesting_is_refused_not_a_recursion_error() -> None:
    with pytest.raises(SelectorError, match="nested deeper than 100 levels"):
        compile_selector("(" * 5000 + "a=b" + ")" * 5000)
    with pytest.raises(SelectorError, match="nested deeper than 100 levels"):
        compile_selector("not " * 5000 + "a=b")
    assert pick("(" * 50 + "env=dev" + ")" * 50) == ["web-02"]
