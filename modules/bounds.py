"""Bounds on what a module reports, so one hostile value can never cost a sweep its results.

A process may carry a command line of megabytes, a file name may be thousands of levels deep:
every row is cut down here, before it leaves the module, until its worst-case JSON encoding fits
``ROW_BUDGET`` (well inside the smallest frame an agent sends, 1 MiB by default). A string cut
ends with a marker giving its true length (``...[1363148 chars]``); a list or object cut ends
with a marker item giving its true size. Soft error messages are cut the same way.
"""

from __future__ import annotations

from typing import Any

#: Characters kept of one string, before the row's budget asks for fewer.
MAX_TEXT = 64 * 1024
#: Items kept of one list or object, before the row's budget asks for fewer.
MAX_ITEMS = 4096
#: Worst-case encoded size of a row: JSON escapes a character in at most 6 bytes (``\u001b``).
ROW_BUDGET = 256 * 1024
#: Characters kept of one soft error message.
MAX_ERROR_TEXT = 1024
_SCALAR = 32  # bytes an int, float, bool or null takes at most (64-bit integers, float repr)


def cut_text(text: str, limit: int) -> str:
    """``text`` if it is at most ``limit`` characters, else its start and a marker with its
    true length."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[{len(text)} chars]"


def bound_row(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with every value cut so that the whole row encodes within ``ROW_BUDGET``."""
    text, items = MAX_TEXT, MAX_ITEMS
    while True:
        out, size = _bound_dict(row, text, items)
        if size <= ROW_BUDGET or text <= 16:
            return out
        text, items = text // 4, max(items // 4, 4)


def _bound(value: Any, text: int, items: int) -> tuple[Any, int]:
    """The bounded value and its worst-case encoded size."""
    kind = type(value)
    if kind is str:
        value = cut_text(value, text)
        return value, 6 * len(value) + 2
    if kind is dict:
        return _bound_dict(value, text, items)
    if kind is list or kind is tuple:
        out: list[Any] = []
        size = 2
        for item in value[:items]:
            item, n = _bound(item, text, items)
            out.append(item)
            size += n + 1
        if len(value) > items:
            out.append(f"...[{len(value)} items]")
            size += 32
        return out, size
    return value, _SCALAR


def _bound_dict(value: dict[str, Any], text: int, items: int) -> tuple[dict[str, Any], int]:
    out: dict[str, Any] = {}
    size = 2
    for i, (key, item) in enumerate(value.items()):
        if i == items:
            out["..."] = f"[{len(value)} keys]"
            size += 32
            break
        key = cut_text(str(key), text)
        item, n = _bound(item, text, items)
        out[key] = item
        size += 6 * len(key) + 4 + n
    return out, size
