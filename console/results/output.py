"""How results reach a terminal or a pipe: JSON lines on stdout, readable text, progress on stderr.

Every value an agent sent goes through console/results/text.py on its way out.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from typing import Any, TextIO

from console.results.provenance import provenance
from console.results.records import (
    ANSWERED,
    Event,
    HostEvent,
    HostResult,
    MatchEvent,
    RetryEvent,
    Summary,
)
from console.results.text import cell, json_line, plural, printable
from modules.registry import get_module

#: The host table's header, live (``run``) and from the store (``results show``).
HOST_HEADER = "host\tstatus\tmatches\telapsed_ms\tdetail"


def host_line(r: HostResult) -> str:
    """One host of the host table, terminal-safe."""
    detail = "; ".join(x for x in (r.replay_note, r.detail) if x)
    cells = (r.host, r.status_text, str(r.matches), str(r.elapsed_ms), detail)
    return "\t".join(printable(c) for c in cells)


def match_line(match: MatchEvent) -> str:
    """One match row: the host, then the module's declared columns, terminal-safe."""
    return "\t".join([printable(match.host), *row_cells(match.module, match.data)])


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

    def begin(self, envelope: dict[str, Any]) -> None:
        """The first line: the action's provenance (``results show --json`` starts the same)."""
        self.out.write(json_line(provenance(envelope).to_event()) + "\n")
        self.out.flush()

    def __call__(self, event: Event) -> None:
        if isinstance(event, MatchEvent | HostEvent | RetryEvent):
            record = event.result.to_event() if isinstance(event, HostEvent) else event.to_event()
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
            self.out.write(match_line(event) + "\n")
            self.out.flush()
        elif isinstance(event, HostEvent):
            self._answered += 1
            self._progress()
        elif isinstance(event, RetryEvent):
            self.err.write(f"{printable(event.host)}: {printable(event.text)}\n")
            self.err.flush()

    def start(self, hosts: int) -> None:
        self._total = hosts

    def _progress(self) -> None:
        now = time.monotonic()
        if self.err.isatty() and (now - self._last_progress > 0.1 or self._answered == self._total):
            self._last_progress = now
            self.err.write(f"\r{self._answered}/{plural(self._total, 'host')} done")
            self.err.flush()

    def summary(self, summary: Summary) -> None:
        if self.err.isatty():
            self.err.write("\n")
        wanted = {"found": ("matched",), "notfound": ("nomatch",), "all": ANSWERED}[self.show]
        rows = [
            r for r in summary.results.values() if r.status in wanted or r.status not in ANSWERED
        ]
        if rows:
            self.out.write("\n" + HOST_HEADER + "\n")
            for r in sorted(rows, key=lambda r: r.host):
                self.out.write(host_line(r) + "\n")
        s = summary.to_event()
        replayed = sum(1 for r in summary.results.values() if r.replay)
        self.err.write(
            f"{plural(s['hosts'], 'host')}: {s['matched']} matched, {s['nomatch']} no match, "
            f"{s['failed']} failed in {s['elapsed_ms'] / 1000:.2f} s "
            + (f"({replayed} replayed from an earlier run) " if replayed else "")
            + f"(run {s['run_id']}, action {s['action_id']})\n"
        )
