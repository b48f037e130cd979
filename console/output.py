"""How results reach a terminal or a pipe: JSON lines on stdout, readable text, progress on stderr.

Everything an agent sends is attacker-controlled on a compromised host, so text output escapes
control characters (a file name holding an escape sequence prints as ``\\x1b[...``, harmlessly).
"""

from __future__ import annotations

import functools
import json
import sys
import time
from typing import Any, TextIO

from console.dispatch import ANSWERED, Event, HostEvent, MatchEvent, Summary
from modules.registry import get_module

_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
_CONTROL.update({0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"})
# Characters that reorder or break the line around them (bidi embeddings, overrides and isolates,
# line and paragraph separators): a name holding U+202E shows "evil\u202egpj.exe" as "evilexe.jpg".
_CONTROL.update(
    {c: f"\\u{c:04x}" for c in (0x200E, 0x200F, *range(0x2028, 0x202F), *range(0x2066, 0x206A))}
)
# Lone surrogates: bytes of a non-UTF-8 file name, decoded with surrogateescape (U+DC80..U+DCFF
# stand for bytes 0x80..0xFF). They have no UTF-8 form, so print the byte they stand for.
_SURROGATES = {c: f"\\x{c - 0xDC00:02x}" for c in range(0xDC80, 0xDD00)}
_SURROGATES.update({c: f"\\u{c:04x}" for c in range(0xD800, 0xE000) if c not in _SURROGATES})
_CONTROL.update(_SURROGATES)


def escape(text: str) -> str:
    """``text`` with control, bidi and surrogate characters escaped: ``printable`` of a string,
    without its type checks (for hot loops that know they hold a string)."""
    return text.translate(_CONTROL)


def printable(value: Any) -> str:
    """One line of safe text for any value an agent sent."""
    if isinstance(value, list):
        return ",".join(printable(v) for v in value)
    return escape(value if isinstance(value, str) else "" if value is None else str(value))


def cell(value: Any, kind: str = "text") -> str:
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
    return text.translate(_SURROGATES)


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


def columns_of(module: str) -> list[str]:
    return [name for name, _ in column_kinds(module)]


@functools.cache
def column_kinds(module: str) -> tuple[tuple[str, str], ...]:
    """The module's declared result columns as (name, kind); asked once per printed row."""
    found = get_module(module)
    return tuple((c.name, c.kind) for c in found.columns) if found else ()


def row_cells(module: str, data: dict[str, Any]) -> list[str]:
    """A result row as text cells in the module's column order."""
    return [cell(data.get(name), kind) for name, kind in column_kinds(module)]


class JsonLines:
    """``run --json``: one JSON object per event on stdout, flushed as it arrives."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.out = out

    def __call__(self, event: Event) -> None:
        if isinstance(event, MatchEvent | HostEvent):
            record = event.to_event() if isinstance(event, MatchEvent) else event.result.to_event()
            self.out.write(json_line(record) + "\n")
            self.out.flush()

    def summary(self, summary: Summary) -> None:
        self.out.write(json.dumps(summary.to_event()) + "\n")
        self.out.flush()


class TextOutput:
    """Matches as a table streaming on stdout; a host table and totals at the end."""

    def __init__(
        self, show: str = "found", out: TextIO = sys.stdout, err: TextIO = sys.stderr
    ) -> None:
        self.show, self.out, self.err = show, out, err
        self._headers_printed: set[str] = set()
        self._answered = 0
        self._total = 0
        self._last_progress = 0.0

    def __call__(self, event: Event) -> None:
        if isinstance(event, MatchEvent):
            if event.module not in self._headers_printed:
                self._headers_printed.add(event.module)
                self.out.write("\t".join(["host", *columns_of(event.module)]) + "\n")
            cells = [printable(event.host), *row_cells(event.module, event.data)]
            self.out.write("\t".join(cells) + "\n")
            self.out.flush()
        elif isinstance(event, HostEvent):
            self._answered += 1
            self._progress()

    def start(self, hosts: int) -> None:
        self._total = hosts

    def _progress(self) -> None:
        now = time.monotonic()
        if self.err.isatty() and (now - self._last_progress > 0.1 or self._answered == self._total):
            self._last_progress = now
            self.err.write(f"\r{self._answered}/{self._total} hosts done")
            self.err.flush()

    def summary(self, summary: Summary) -> None:
        if self.err.isatty():
            self.err.write("\n")
        wanted = {"found": ("matched",), "notfound": ("nomatch",), "all": ANSWERED}[self.show]
        rows = [
            r for r in summary.results.values() if r.status in wanted or r.status not in ANSWERED
        ]
        if rows:
            self.out.write("\nhost\tstatus\tmatches\telapsed_ms\tdetail\n")
            for r in sorted(rows, key=lambda r: r.host):
                status = f"{r.status}:{r.reason}" if r.reason else r.status
                self.out.write(
                    f"{printable(r.host)}\t{status}\t{r.matches}\t{r.elapsed_ms}\t"
                    f"{printable(r.detail)}\n"
                )
        s = summary.to_event()
        self.err.write(
            f"{s['hosts']} hosts: {s['matched']} matched, {s['nomatch']} no match, "
            f"{s['failed']} failed in {s['elapsed_ms'] / 1000:.2f} s "
            f"(action {s['action_id']})\n"
        )
