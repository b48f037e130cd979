"""A runbook's report: what each step did, as JSON or as a Markdown page an incident can keep."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from console.results.text import printable
from console.runbook.parse import Runbook

StepStatus = Literal["ran", "skipped", "not-run"]


@dataclass
class StepReport:
    """What one step did; counts come from the same events the store recorded."""

    name: str
    module: str
    target: str
    status: StepStatus = "not-run"
    note: str = ""
    action_id: str | None = None
    hosts: int = 0
    matched: int = 0
    nomatch: int = 0
    failed: int = 0
    matches: int = 0
    elapsed_ms: int = 0
    matched_hosts: list[str] = field(default_factory=list)
    failed_hosts: list[dict[str, Any]] = field(default_factory=list)
    stopped: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Every field, in declaration order (the report's JSON and the stored reports)."""
        return dataclasses.asdict(self)


@dataclass
class RunbookReport:
    runbook: Runbook
    started: float
    steps: list[StepReport]
    elapsed_ms: int = 0

    @property
    def launched(self) -> list[StepReport]:
        return [s for s in self.steps if s.status == "ran"]

    def exit_status(self) -> int:
        """As ``spyglass run``: 3 some host failed in some step, 0 something matched, else 1;
        2 when no step was launched at all."""
        launched = self.launched
        if not launched:
            return 2
        if any(s.failed for s in launched):
            return 3
        return 0 if any(s.matched for s in launched) else 1

    def to_json(self) -> dict[str, Any]:
        return {
            "runbook": self.runbook.name,
            "file": str(self.runbook.path),
            "started": int(self.started),
            "elapsed_ms": self.elapsed_ms,
            "exit_status": self.exit_status(),
            "steps": [s.to_json() for s in self.steps],
        }

    def to_markdown(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(self.started))
        out = [
            f"# Runbook: {_md(self.runbook.name)}",
            "",
            f"- file: `{_md(str(self.runbook.path))}`",
            f"- started: {when}, took {self.elapsed_ms / 1000:.1f} s",
            f"- exit status: {self.exit_status()}",
            "",
        ]
        if self.runbook.description:
            out += [_md(self.runbook.description), ""]
        out += [
            "| # | step | module | status | hosts | matched | no match | failed | matches |"
            " action |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for i, s in enumerate(self.steps):
            out.append(
                f"| {i + 1} | {_md(s.name)} | {s.module} | {s.status} | {s.hosts} | {s.matched} "
                f"| {s.nomatch} | {s.failed} | {s.matches} | {s.action_id or '-'} |"
            )
        for i, s in enumerate(self.steps):
            out += ["", f"## {i + 1}. {_md(s.name)}", ""]
            out.append(f"- module `{s.module}` on target `{_md(s.target)}`")
            if s.note:
                out.append(f"- {_md(s.note)}")
            if s.status == "ran":
                out.append(f"- action `{s.action_id}`: `spyglass results show {s.action_id}`")
                hosts = ", ".join(_md(h) for h in s.matched_hosts) or "none"
                out.append(f"- matched hosts ({s.matched}): {hosts}")
                if s.failed_hosts:
                    out += ["", "| failed host | status | detail |", "|---|---|---|"]
                    for f in s.failed_hosts:
                        status = f"{f['status']}:{f['reason']}" if f["reason"] else f["status"]
                        out.append(f"| {_md(f['host'])} | {status} | {_md(f['detail'])} |")
            if s.stopped:
                out += ["", f"**Runbook stopped here:** {_md(s.stopped)}"]
        return "\n".join(out) + "\n"


def _md(value: Any) -> str:
    """Agent- or file-provided text made inert in a Markdown table cell."""
    text = printable(value)
    for char in ("\\", "|", "`", "*", "_", "<", ">", "[", "]"):
        text = text.replace(char, "\\" + char)
    return text


def render(report: RunbookReport, *, as_json: bool) -> str:
    if as_json:
        return json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n"
    return report.to_markdown()
