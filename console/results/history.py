"""Past runs as data: export to JSON lines or CSV and the diff of two runs (CLI and TUI share it).

Pure functions over a ``Store``; the front ends only format what these return.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from console.results.output import columns_of
from console.results.records import MatchEvent
from console.results.store import Store
from console.results.text import json_line, utf8_text

# OWASP "CSV injection": a cell starting with one of these is a formula to a spreadsheet.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def jsonl_records(store: Store, run_id: str) -> Iterator[dict[str, Any]]:
    """The run's events as ``run --json`` prints them: matches, then one record per host."""
    for match in store.match_events(run_id):
        yield match.to_event()
    for host in store.host_results(run_id):
        yield host.to_event()


def write_jsonl(store: Store, run_id: str, out: TextIO) -> int:
    """Write the run as JSON lines, valid UTF-8 whatever agents sent; returns the line count."""
    count = 0
    for record in jsonl_records(store, run_id):
        out.write(json_line(record) + "\n")
        count += 1
    return count


def csv_cell(value: Any) -> str:
    """CSV cells an attacker named: neutralise spreadsheet formulas (a leading ``'``), write a
    non-UTF-8 name's bytes as ``\\xff`` like the text output; the csv module quotes the rest."""
    if isinstance(value, list):
        text = ",".join(map(str, value))
    else:
        text = "" if value is None else str(value)
    text = utf8_text(text)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def write_csv(store: Store, run_id: str, modules: list[str], out: TextIO) -> int:
    """Write the run's matches as CSV (host, op, module, declared columns, then whether the host's
    answer was replayed and when it ran); returns the row count."""
    cols = [c for m in dict.fromkeys(modules) for c in columns_of(m)]
    replayed = {h.host: h for h in store.host_results(run_id) if h.replay}
    writer = csv.writer(out)
    writer.writerow(["host", "op", "module", *cols, "replay", "ran_at"])
    count = 0
    for match in store.match_events(run_id):
        data = match.data if isinstance(match.data, dict) else {}
        writer.writerow(
            [
                csv_cell(match.host),
                match.op,
                csv_cell(match.module),
                *[csv_cell(data.get(c)) for c in cols],
                "true" if match.host in replayed else "false",
                replayed[match.host].ran_at if match.host in replayed else "",
            ]
        )
        count += 1
    return count


@dataclass
class RunDiff:
    """What changed between two runs: host statuses, and result rows that came or went."""

    hosts: list[tuple[str, str, str]] = field(default_factory=list)
    """(host, old status or "-", new status or "-") for each host whose status changed."""
    removed: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    added: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def _row_key(match: MatchEvent) -> tuple[str, str]:
    return match.host, json.dumps(match.data, sort_keys=True, ensure_ascii=False)


def diff_runs(store: Store, before_id: str, after_id: str) -> RunDiff:
    rows = [{_row_key(m) for m in store.match_events(r)} for r in (before_id, after_id)]
    hosts = [{h.host: h.status for h in store.host_results(r)} for r in (before_id, after_id)]
    diff = RunDiff()
    for host in sorted(set(hosts[0]) | set(hosts[1])):
        old, new = hosts[0].get(host, "-"), hosts[1].get(host, "-")
        if old != new:
            diff.hosts.append((host, old, new))
    diff.removed = [(h, json.loads(d)) for h, d in sorted(rows[0] - rows[1])]
    diff.added = [(h, json.loads(d)) for h, d in sorted(rows[1] - rows[0])]
    return diff
