"""Turning values an agent sent into safe display text.

Everything from an agent is attacker-controlled on a compromised host: it is escaped with
``console.results.text.printable`` (control characters become ``\\x1b``-style escapes) and shown as
``rich.text.Text`` or raw segments, never parsed as Rich markup.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from rich.text import Text

from console.results.text import CONTROL_ESCAPES, cell, printable
from modules.registry import get_module
from tui.model.when import local_time


def safe(value: Any, style: str = "") -> Text:
    """A Text that shows ``value`` literally, whatever brackets or escapes it holds."""
    return Text(cell(value), style=style)


def pretty_json(value: Any) -> Text:
    """Indented JSON as literal text (for the action preview and agent identity)."""
    return Text(printable_lines(json.dumps(value, indent=2, ensure_ascii=False)))


def printable_lines(text: str) -> str:
    """Like ``printable`` but keeps line breaks."""
    return "\n".join(printable(line) for line in text.split("\n"))


def duration_ms(ms: int | None) -> str:
    if not ms:
        return ""
    return f"{ms / 1000:.2f}s" if ms < 60_000 else f"{ms // 60_000}m{(ms // 1000) % 60:02d}s"


def local_cell(value: Any) -> str:
    """A ``time`` cell in the console's local time, like every other time on screen."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return local_time(value)
    return cell(value, "time")


def readable_data(module: str, data: Any) -> Any:
    """A match's data for display: its ``time`` columns (epoch seconds) in local time."""
    found = get_module(module)
    if found is None or not isinstance(data, dict):
        return data
    times = {c.name for c in found.columns if c.kind == "time"}
    return {k: local_cell(v) if k in times else v for k, v in data.items()}


def formatter(kind: str) -> Callable[[Any], str]:
    """``cell`` specialised for one column kind, with a fast path for plain strings and ints
    (the matches table formats every cell of up to 100,000 rows)."""
    if kind == "time":
        return local_cell

    def fast(value: Any) -> str:
        if type(value) is str:
            # Every character ``printable`` escapes is non-printable to Python (Cc, Cf, Zl, Zp,
            # Cs), so a printable string is its own cell: one C call instead of a translate.
            return value if value.isprintable() else value.translate(CONTROL_ESCAPES)
        if type(value) is int:
            return str(value)
        if value is None:
            return ""
        return cell(value, kind)

    return fast


def row_formatter(kinds: Sequence[str]) -> Callable[[Sequence[Any]], tuple[str, ...]]:
    """Raw values of a row to its display cells, one ``formatter`` per column kind."""
    formatters = tuple(formatter(kind) for kind in kinds)

    def format_row(raw: Sequence[Any]) -> tuple[str, ...]:
        return tuple([f(v) for f, v in zip(formatters, raw, strict=True)])

    return format_row
