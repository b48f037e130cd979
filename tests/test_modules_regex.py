"""Every regex an action carries runs in linear time, by RE2 (issue 13; issue 11, point 9).

The classic catastrophic patterns, which Python's backtracking engine takes ages over, run over
100 KB subjects in the file, process and pkg modules; each run ends (a deadline catches a stall)
with the answer the module result gives. A pattern RE2 cannot run in linear time is refused by
the one validation the console and the agent share, with RE2's reason.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from modules import regex
from modules.registry import all_modules, get_module
from protocol.errors import ParamError
from tests.support.module_runs import run_module

#: Patterns that backtrack exponentially (or worse) in Python's ``re`` on a run of a's that
#: ends in something else.
CATASTROPHIC = [
    "(a+)+$",
    "(a|a)+$",
    "(a|aa)+$",
    "(a*)*b",
    "(a+)*b",
    "^(a?){50}a{50}$",
    "(.*a){20}$",
    "^(\\w+\\s?)*$",
    "(x+x+)+y",
]
SUBJECT = "a" * 100_000 + "!"


@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_file_content_and_path(tmp_path: Path, pattern: str) -> None:
    srv = tmp_path / "srv"
    srv.mkdir()
    (srv / "slow.txt").write_text(SUBJECT + "\n")
    (srv / ("a" * 200 + "!")).write_text("!")
    ctx = run_module("file", tmp_path, paths=["/srv"], content=[pattern])
    assert ctx.rows == [] and ctx.last_progress["files_scanned"] == 2
    ctx = run_module("file", tmp_path, paths=["/srv"], name=[pattern], path_re=[pattern])
    assert ctx.rows == [] and ctx.last_progress["files_scanned"] == 2
    # the same search line by line, macroal: still linear
    ctx = run_module("file", tmp_path, paths=["/srv"], content=["a", pattern], macroal=True)
    assert ctx.rows == []


@pytest.fixture(scope="module")
def long_process() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()", "spyglass-regex-test", SUBJECT],
        stdin=subprocess.PIPE,
    )
    yield proc
    proc.kill()
    proc.wait()


@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_process_cmdline_and_memory(long_process: subprocess.Popen[bytes], pattern: str) -> None:
    ctx = run_module("process", "/", cmdline=[pattern])
    assert ctx.last_progress["processes_scanned"] > 0
    if pattern not in CATASTROPHIC[:3]:
        return  # memory: three patterns are enough, each reads the whole test process
    ctx = run_module(
        "process", "/", cmdline=["spyglass-regex-test"], content=[pattern], match_any=True
    )
    rows = [r for r in ctx.rows if r["pid"] == long_process.pid]
    assert len(rows) == 1 and ctx.last_progress["bytes_read"] > len(SUBJECT)


@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_pkg_name_and_version(tmp_path: Path, pattern: str) -> None:
    status = tmp_path / "var" / "lib" / "dpkg" / "status"
    status.parent.mkdir(parents=True)
    status.write_text(
        f"Package: {SUBJECT}\nStatus: install ok installed\nVersion: {SUBJECT}\n\n"
        "Package: other\nStatus: install ok installed\nVersion: 1\n"
    )
    for params in ({"name": [pattern]}, {"version": [pattern]}):
        rows = run_module("pkg", tmp_path, **params).rows
        assert SUBJECT not in {r["name"] for r in rows}, params
    assert len(run_module("pkg", tmp_path).rows) == 2


def test_content_search_keeps_its_line_semantics(tmp_path: Path) -> None:
    """Searched a whole buffer at once, a content regex still never spans two lines, and ^/$
    still anchor at each line."""
    srv = tmp_path / "srv"
    srv.mkdir()
    (srv / "two-lines").write_text("key\nvalue\n")
    (srv / "one-line").write_text("head\nkey value\n")

    def found(**params: object) -> list[str]:
        ctx = run_module("file", tmp_path, paths=["/srv"], **params)
        return sorted(r["path"].rsplit("/", 1)[1] for r in ctx.rows)

    assert found(content=["key\\svalue"]) == ["one-line"]
    assert found(content=["key[^x]value"]) == ["one-line"]
    assert found(content=["^value$"]) == ["two-lines"]
    assert found(content=["^key$"]) == ["two-lines"]
    assert found(content=["key", "value"]) == ["one-line", "two-lines"]
    assert found(content=["key", "value"], macroal=True) == ["one-line"]
    # Every file is read into one buffer: what a longer file left after a short one's end is
    # not part of the short one ($ matches at its end, without a newline).
    for i in range(10):
        (srv / f"long{i}").write_text("taxYYYYYYYYYYYYYYYYYY")
        (srv / f"short{i}").write_text("tax")
    assert found(content=["x$"]) == sorted(f"short{i}" for i in range(10))


REGEX_PARAMS = [
    (module.name, param.name)
    for module in all_modules()
    for param in module.params
    if param.kind in ("regex", "mode", "mac")
]


@pytest.mark.parametrize(("module", "param"), REGEX_PARAMS)
@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("(a)\\1", "invalid escape sequence: \\1"),
        ("(?=a)", "invalid perl operator: (?="),
        ("(?<!a)b", "invalid perl operator: (?<!"),
        ("a{1001}", "invalid repetition size: {1001}"),
    ],
)
def test_what_re2_cannot_run_is_invalid_params(
    module: str, param: str, pattern: str, reason: str
) -> None:
    found = get_module(module)
    assert found is not None
    with pytest.raises(ParamError) as caught:
        found.validate(
            {**found.example, param: [pattern] if found_param(module, param) else pattern}
        )
    assert str(caught.value).endswith(f": invalid regex: {reason}"), str(caught.value)


def found_param(module: str, param: str) -> bool:
    """Is the parameter repeatable (its value an array)?"""
    found = get_module(module)
    assert found is not None
    return next(p for p in found.params if p.name == param).repeatable


#: Pieces of patterns and names near the plain-text shortcut's edges: escapes RE2 takes and
#: refuses, specials, anchors, NUL, a newline, non-ASCII text and surrogates.
PATTERN_PIECES = ["a", "b", ".", "^", "$", "*", "(", ")", "[", "]", "{", "}", "|", "?", "+", "-"]
PATTERN_PIECES += ["\\", " ", "\x00", "\n", "é", "\udc80", "\ud800", "\\.", "\\$", "\\^"]
PATTERN_PIECES += ["\\\\", "\\-", "\\/", "\\é", "\\d", "\\1", "\\\n", "\\\x00", "\\\x7f"]
NAME_PIECES = ["a", "b", ".", "^", "$", "\\", "-", "/", " ", "\x00", "\n", "é", "\udc80", "\x7f"]


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.sampled_from(PATTERN_PIECES), max_size=6).map("".join),
    st.lists(st.sampled_from(NAME_PIECES), max_size=8).map("".join),
)
@example("\\\n", "a\nb")  # an escaped newline is a newline
@example("^\\é$", "é")  # RE2 refuses an escaped non-ASCII letter
@example("a\ud800", "a")  # a lone surrogate does not encode to UTF-8
@example("\\.conf$", "x.conf")
def test_a_name_pattern_means_what_re2_means(pattern: str, name: str) -> None:
    """The shortcut for plain text (no RE2 compile, a string method) refuses what RE2 refuses
    and finds what RE2 finds; the subject is a name as os.scandir gives it."""
    try:
        compiled = regex._compile(pattern)
    except ValueError as refused:
        with pytest.raises(ValueError) as caught:
            regex.text_search(pattern)
        assert str(caught.value) == str(refused)
        return
    data = name.encode("utf-8", "surrogateescape")
    expected = compiled.Match(regex._UNANCHORED, data, 0, len(data))[0] != regex._NO_MATCH
    assert regex.text_search(pattern)(name) == expected
