"""Terminal-safe text and JSON for values an agent sent: the one place that knows how.

Everything an agent sends is attacker-controlled on a compromised host. Text for a terminal
escapes control, bidi and line-breaking characters (a file name holding an escape sequence prints
as ``\\x1b[...``, harmlessly) and shows a non-UTF-8 name's bytes as ``\\xff``; JSON is always
valid UTF-8; a free-text column stays storable in SQLite.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from modules.base import ColumnKind

CONTROL_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
CONTROL_ESCAPES.update({0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"})
# Characters that reorder or break the line around them (bidi embeddings, overrides and isolates,
# line and paragraph separators): a name holding U+202E shows "evil\u202egpj.exe" as "evilexe.jpg".
CONTROL_ESCAPES.update(
    {c: f"\\u{c:04x}" for c in (0x200E, 0x200F, *range(0x2028, 0x202F), *range(0x2066, 0x206A))}
)
# Lone surrogates: bytes of a non-UTF-8 file name, decoded with surrogateescape (U+DC80..U+DCFF
# stand for bytes 0x80..0xFF). They have no UTF-8 form, so print the byte they stand for.
SURROGATE_ESCAPES = {c: f"\\x{c - 0xDC00:02x}" for c in range(0xDC80, 0xDD00)}
SURROGATE_ESCAPES.update(
    {c: f"\\u{c:04x}" for c in range(0xD800, 0xE000) if c not in SURROGATE_ESCAPES}
)
CONTROL_ESCAPES.update(SURROGATE_ESCAPES)


def printable(value: Any) -> str:
    """One line of safe text for any value an agent sent."""
    if isinstance(value, list):
        return ",".join(printable(v) for v in value)
    text = value if isinstance(value, str) else "" if value is None else str(value)
    return text.translate(CONTROL_ESCAPES)


def plural(count: int, word: str, words: str | None = None) -> str:
    """``1 host``, ``2 hosts``, ``0 hosts`` (``words``: a plural that is not ``word`` + s)."""
    return f"{count} {word}" if count == 1 else f"{count} {words or word + 's'}"


def cell(value: Any, kind: ColumnKind | str = "text") -> str:
    """One line of escaped text for a result cell, shaped by its declared column kind: times in
    UTC, booleans as yes/no, objects (``json`` columns) as compact JSON."""
    if value is None:
        return ""
    if kind == "time" and isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(value))
        except (OverflowError, OSError, ValueError):
            return str(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict) or (kind == "json" and isinstance(value, list | tuple)):
        return printable(json.dumps(value, ensure_ascii=False, sort_keys=True))
    if isinstance(value, tuple):  # a list kept as a tuple (the TUI's row values)
        value = list(value)
    return printable(value)


def utf8_text(text: str) -> str:
    """``text`` with only its lone surrogates escaped as ``printable`` does (``\\xff`` for the
    byte 0xff of a non-UTF-8 name): for formats that quote the rest themselves, such as CSV."""
    return text.translate(SURROGATE_ESCAPES)


def json_line(record: Any) -> str:
    """One line of JSON that is valid UTF-8 whatever an agent sent.

    A lone surrogate (a non-UTF-8 file name) cannot be written as UTF-8: such a record is
    written with ASCII escapes instead (``"\\udcff"``), which ``json.loads`` turns back into the
    same string, so the name's bytes survive (``os.fsencode``).
    """
    text = json.dumps(record, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(record, ensure_ascii=True)
    return text


def storable_text(value: str | None) -> str | None:
    """A free-text column from an agent (a detail naming a non-UTF-8 path): keep it storable,
    escaping what UTF-8 cannot hold (``\\udcff``), rather than lose the whole batch."""
    if value is None:
        return None
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


# OWASP "CSV injection": a cell a spreadsheet reads as a formula starts with = + - @ tab or CR.
# "+" and "-" also start plain data (``-rw-r--r--``, ``-5``): those cells are a formula only when
# something after the sign computes (a call, a DDE pipe, a cell reference, arithmetic on numbers).
_ALWAYS_FORMULA = ("=", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_COMPUTES = re.compile(r"[(|!\"&]|[A-Za-z]{1,3}\$?\d|[\d)]\s*[-+*/^%]")


def is_formula(text: str) -> bool:
    """Would a spreadsheet read this CSV cell as a formula?"""
    if text.startswith(_ALWAYS_FORMULA):
        return True
    if text.startswith(("+", "-")):
        return not _NUMBER.fullmatch(text) and _COMPUTES.search(text, 1) is not None
    return False


def csv_text(value: Any) -> str:
    """A CSV cell from a value an agent sent: a formula gets a leading ``'`` (a spreadsheet then
    shows it as text), a non-UTF-8 name's bytes read ``\\xff`` as in the text output, every other
    value is kept byte for byte; the csv module quotes the rest."""
    if isinstance(value, list):
        text = ",".join(map(str, value))
    else:
        text = "" if value is None else str(value)
    text = utf8_text(text)
    return "'" + text if is_formula(text) else text
