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
from console.results.provenance import Provenance, clock, provenance
from console.results.records import MatchEvent, Summary
from console.results.store import Store
from console.results.text import csv_text, json_line
from protocol.errors import UsageError


def run_provenance(store: Store, run_id: str) -> Provenance:
    """The provenance of a stored run, from the envelope it launched."""
    run = store.run(run_id)
    return provenance(json.loads(run["envelope"]) if run is not None else {})


def run_summary(store: Store, run_id: str) -> Summary:
    """The run's summary, as ``run --json`` printed it at the end of the run."""
    run = store.run(run_id)
    assert run is not None
    results = {r.host: r for r in store.host_results(run_id)}
    return Summary(run["action_id"], results, run["elapsed_ms"], run["id"])


def jsonl_records(store: Store, run_id: str) -> Iterator[dict[str, Any]]:
    """The run as ``run --json`` printed it: the action, the matches, one record per host, then
    the summary."""
    yield run_provenance(store, run_id).to_event()
    for match in store.match_events(run_id):
        yield match.to_event()
    for host in store.host_results(run_id):
        yield host.to_event()
    yield run_summary(store, run_id).to_event()


def write_jsonl(store: Store, run_id: str, out: TextIO) -> int:
    """Write the run as JSON lines, valid UTF-8 whatever agents sent; returns the line count."""
    count = 0
    for record in jsonl_records(store, run_id):
        out.write(json_line(record) + "\n")
        count += 1
    return count


#: The provenance columns that end every CSV row, so that a row pasted elsewhere keeps them.
CSV_PROVENANCE = ("action_id", "params", "target", "signers", "started")


def write_csv(store: Store, run_id: str, modules: list[str], out: TextIO) -> int:
    """Write the run's matches as CSV (host, op, module, declared columns, whether the host's
    answer was replayed and when it ran, provenance); returns the row count."""
    cols = [c for m in dict.fromkeys(modules) for c in columns_of(m)]
    replayed = {h.host: h for h in store.host_results(run_id) if h.replay}
    origin = run_provenance(store, run_id)
    run = store.run(run_id)
    started = clock(run["started"]) if run is not None else ""
    where = [origin.action_id, origin.params, origin.target, " ".join(origin.signers), started]
    writer = csv.writer(out)
    writer.writerow(["host", "op", "module", *cols, "replay", "ran_at", *CSV_PROVENANCE])
    count = 0
    for match in store.match_events(run_id):
        data = match.data if isinstance(match.data, dict) else {}
        writer.writerow(
            [
                csv_text(match.host),
                match.op,
                csv_text(match.module),
                *[csv_text(data.get(c)) for c in cols],
                "true" if match.host in replayed else "false",
                replayed[match.host].ran_at if match.host in replayed else "",
                *map(csv_text, where),
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

    @property
    def changed(self) -> bool:
        return bool(self.hosts or self.removed or self.added)

    def to_json(self) -> dict[str, Any]:
        """``results diff --json``."""
        return {
            "changed": self.changed,
            "hosts": [{"host": h, "before": old, "after": new} for h, old, new in self.hosts],
            "removed": [{"host": h, "data": d} for h, d in self.removed],
            "added": [{"host": h, "data": d} for h, d in self.added],
        }


def _row_key(match: MatchEvent) -> tuple[str, str]:
    return match.host, json.dumps(match.data, sort_keys=True, ensure_ascii=False)


def diff_runs(store: Store, before_id: str, after_id: str) -> RunDiff:
    """What changed from one run to the other; runs of different modules do not compare (a
    ``UsageError`` says which)."""
    modules = [(run["modules"] if (run := store.run(r)) else "") for r in (before_id, after_id)]
    if modules[0] != modules[1]:
        raise UsageError(
            f"runs of different modules do not compare: {modules[0]} ({before_id}) and "
            f"{modules[1]} ({after_id})"
        )
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
