"""``runbook run --compare-last``: this run of a runbook against its previous run in the store.

Each runbook run leaves its report in the store (table ``runbook_reports``, keyed by the
runbook's name); the comparison takes the newest earlier report and, step by step, says whether
the step ran both times and what its hosts and rows did in between (``history.diff_runs`` of the
two steps' runs). A scheduled sweep (contrib/systemd) then only has to look at the exit status.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from console.results.history import RunDiff, diff_runs
from console.results.store import Store
from console.results.text import plural, printable
from console.runbook.report import RunbookReport
from protocol.errors import UsageError

SCHEMA = """
CREATE TABLE IF NOT EXISTS runbook_reports (
    runbook TEXT NOT NULL,
    started REAL NOT NULL,
    report TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runbook_reports_name ON runbook_reports(runbook, started);
"""


@dataclass
class StepChange:
    """One step that differs from the previous run: its status, or its hosts and rows."""

    step: str
    before: str
    """The step's status last time (``ran``, ``skipped``, ``not-run``, ``absent``)."""
    after: str
    diff: RunDiff | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "before": self.before,
            "after": self.after,
            **(self.diff.to_json() if self.diff else {}),
        }


@dataclass
class Comparison:
    """This run against the previous one (``previous`` is None when there was none)."""

    previous: float | None
    changes: list[StepChange] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def to_json(self) -> dict[str, Any]:
        return {
            "previous_started": self.previous,
            "changed": self.changed,
            "steps": [c.to_json() for c in self.changes],
        }

    def summary(self) -> str:
        if self.previous is None:
            return "no earlier run of this runbook in the store: nothing to compare"
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.previous))
        if not self.changed:
            return f"same as the last run ({when})"
        return f"changed since the last run ({when}): {plural(len(self.changes), 'step')} differ"

    def to_markdown(self) -> str:
        out = ["", "## Changes since the last run", "", printable(self.summary())]
        for change in self.changes:
            out += ["", f"### {printable(change.step)}: {change.before} -> {change.after}", ""]
            if change.diff is None:
                continue
            out += [f"- host `{printable(h)}`: {old} -> {new}" for h, old, new in change.diff.hosts]
            for sign, rows in (("-", change.diff.removed), ("+", change.diff.added)):
                for host, data in rows:
                    row = json.dumps(data, sort_keys=True, ensure_ascii=False)
                    out.append(f"- `{sign} {printable(host)} {printable(row)}`")
        return "\n".join(out) + "\n"


def compare_last(store: Store, report: RunbookReport) -> Comparison:
    """Compare ``report`` with the newest earlier report of the same runbook, then keep it."""
    store.db.executescript(SCHEMA)
    row = store.db.execute(
        "SELECT started, report FROM runbook_reports WHERE runbook = ? AND started < ?"
        " ORDER BY started DESC LIMIT 1",
        (report.runbook.name, report.started),
    ).fetchone()
    this = report.to_json()
    with store.db:
        store.db.execute("BEGIN")
        store.db.execute(
            "INSERT INTO runbook_reports VALUES (?, ?, ?)",
            (report.runbook.name, report.started, json.dumps(this)),
        )
    if row is None:
        return Comparison(None)
    before = {s["name"]: s for s in json.loads(row[1])["steps"]}
    comparison = Comparison(row[0])
    for step in this["steps"]:
        old = before.get(step["name"], {"status": "absent", "action_id": None})
        change = StepChange(step["name"], old["status"], step["status"])
        if old["status"] == step["status"] == "ran":
            try:
                change.diff = diff_runs(store, old["action_id"], step["action_id"])
            except UsageError:  # the step's module changed, or its last run was pruned
                comparison.changes.append(change)
                continue
            if change.diff.changed:
                comparison.changes.append(change)
        elif old["status"] != step["status"]:
            comparison.changes.append(change)
    return comparison
