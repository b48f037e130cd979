"""The matches filter: regular expressions, optionally scoped to one column.

    path~\\.php$            the path column contains a match of the regex
    host=lab-00[4-8]       the host column matches the regex entirely
    webshell               some cell of the row contains a match (a bare word or regex)

Terms are separated by spaces and must all hold (write ``\\s`` for a space inside a regex).
Smart case: a pattern with no capital letter ignores case. A bare term that is not a valid regex
is searched as plain text; a scoped one that is not valid, or names no column, is an error and
the filter is not applied (``RowFilter.error`` says why).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_SCOPED = re.compile(r"([a-z][a-z0-9_]*)([~=])(.*)", re.S)


@dataclass(frozen=True, slots=True)
class Term:
    column: int | None
    """Index of the column it looks at; None: the whole row."""
    pattern: re.Pattern[str]
    full: bool
    """``=``: the whole cell must match; ``~``: a match anywhere in it."""

    def holds(self, text: str) -> bool:
        if self.full:
            return self.pattern.fullmatch(text) is not None
        return self.pattern.search(text) is not None


@dataclass(frozen=True, slots=True)
class RowFilter:
    text: str
    terms: tuple[Term, ...] = ()
    error: str | None = None
    note: str | None = None
    """Something the investigator should know although the filter applies (a literal search)."""

    @property
    def active(self) -> bool:
        return bool(self.terms) and self.error is None


def _compile(pattern: str) -> re.Pattern[str]:
    flags = 0 if any(c.isupper() for c in pattern) else re.IGNORECASE
    return re.compile(pattern, flags)


def parse_filter(text: str, columns: Sequence[str]) -> RowFilter:
    """``text`` as typed, against the table's column keys."""
    text = text.strip()
    terms: list[Term] = []
    notes: list[str] = []
    for word in text.split():
        scoped = _SCOPED.fullmatch(word)
        if scoped and scoped[3]:
            name, op, pattern = scoped.groups()
            if name not in columns:
                return RowFilter(text, error=f"no column {name!r} (columns: {', '.join(columns)})")
            try:
                compiled = _compile(pattern)
            except re.error as err:
                return RowFilter(text, error=f"{name}{op}{pattern}: not a regex: {err}")
            terms.append(Term(columns.index(name), compiled, op == "="))
            continue
        try:
            compiled = _compile(word)
        except re.error:
            compiled = _compile(re.escape(word))
            notes.append(f"{word!r} is not a regex: searched as text")
        terms.append(Term(None, compiled, False))
    return RowFilter(text, tuple(terms), note="; ".join(notes) or None)
