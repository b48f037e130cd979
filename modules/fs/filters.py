"""The metadata filters, compiled once per run into plain predicates.

Each filter may carry several values. Like MIG, every value is one check: with the default
match-all they must all hold (``--size >1k --size <10M`` is a window), with ``match_any`` one is
enough. Digest filters are the exception (see ``walk``): a file has one digest, so a list of
digests is a set of suspects.
"""

from __future__ import annotations

import operator
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modules.kinds import parse_age, parse_size
from modules.regex import text_search

#: A predicate on (base name, reported path, lstat or None).
Test = Callable[[str, str, "os.stat_result | None"], bool]

_COMPARE = {"<": operator.lt, ">": operator.gt, "=": operator.eq}


@dataclass(frozen=True)
class MetaCheck:
    """One metadata filter ready to run; ``needs_stat`` says whether it needs an lstat."""

    name: str
    needs_stat: bool
    test: Test
    inverted: bool


def _join(preds: list[Callable[[Any], bool]], any_mode: bool) -> Callable[[Any], bool]:
    if len(preds) == 1:
        return preds[0]
    if any_mode:
        return lambda value: any(p(value) for p in preds)
    return lambda value: all(p(value) for p in preds)


def _regexes(patterns: list[str], any_mode: bool) -> Callable[[str], bool]:
    return _join([text_search(p) for p in patterns], any_mode)


def _size(text: str) -> Callable[[os.stat_result], bool]:
    op, limit = parse_size(text)
    compare = _COMPARE[op]
    return lambda st: compare(st.st_size, limit)


def _age(text: str, now: float) -> Callable[[os.stat_result], bool]:
    op, seconds = parse_age(text)
    cutoff = now - seconds
    if op == "<":  # modified within the period
        return lambda st: st.st_mtime >= cutoff
    return lambda st: st.st_mtime < cutoff


def meta_checks(params: dict[str, Any], now: float) -> list[MetaCheck]:
    """The metadata filters that have values, cheapest first (the declaration's order)."""
    any_mode = params["match_any"]
    inverted = set(params["mismatch"])
    checks: list[MetaCheck] = []

    def add(name: str, needs_stat: bool, test: Test) -> None:
        checks.append(MetaCheck(name, needs_stat, test, name in inverted))

    if params["name"]:
        by_name = _regexes(params["name"], any_mode)
        add("name", False, lambda name, _path, _st: by_name(name))
    if params["path_re"]:
        by_path = _regexes(params["path_re"], any_mode)
        add("path_re", False, lambda _name, path, _st: by_path(path))
    if params["size"]:
        by_size = _join([_size(t) for t in params["size"]], any_mode)
        add("size", True, lambda _name, _path, st: by_size(st))
    if params["mtime"]:
        by_age = _join([_age(t, now) for t in params["mtime"]], any_mode)
        add("mtime", True, lambda _name, _path, st: by_age(st))
    if params["mode"]:
        by_mode = _regexes(params["mode"], any_mode)
        add("mode", True, lambda _name, _path, st: by_mode(stat.filemode(st.st_mode)))  # type: ignore[union-attr]
    return checks
