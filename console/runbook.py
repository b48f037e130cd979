"""Runbooks: TOML files of named steps, checked without connecting, then signed and run in order.

A runbook is the habit of an incident made repeatable: the same IOC sweep every night, the same
checklist on every incident. Each step is one signed action (one signature per step, made just
before the step launches so its lifetime starts then), run through ``Investigation`` so every
result lands in the store, and all steps share one connection ``Pool``.

Format (every key of a step is checked; errors name the step and the key)::

    name = "xz backdoor sweep"          # optional, default: the file name
    description = "..."                 # optional
    target = "os=linux"                 # optional default target of the steps
    expire = "5m"                       # optional default lifetime of each step's action

    [[steps]]
    name = "packages"                   # required, unique
    module = "pkg"                      # required, a module of `spyglass modules list`
    params = { name = ["^liblzma5$"], version = ['^5\\.6\\.[01]'] }
    target = "env=prod"                 # required unless the runbook has a default
    expire = "5m"
    stop_if = "nomatch"                 # after this step: "matched", "nomatch" or "failed"

    [[steps]]
    name = "libraries"
    module = "file"
    only_hosts_matched_by = "packages"  # run only where that earlier step matched
    params = { paths = ["/usr/lib"], name = ['^liblzma\\.so'] }

``stop_if`` is read after the step it is written on has run: ``matched`` stops the runbook if any
host matched, ``nomatch`` if no host matched, ``failed`` if any host failed (unreachable,
rejected, ...). A list stops on any of its conditions. ``only_hosts_matched_by`` narrows a step to
the hosts (of its own target) that an earlier step reported as ``matched``; when there are none,
the step is skipped and nothing is signed for it.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

from console.compose import parse_duration
from console.dispatch import DEFAULT_CONCURRENCY, Event, HostEvent, MatchEvent
from console.investigation import Investigation
from console.output import printable
from console.ssh import Pool
from console.store import Store
from inventory.model import Host, Inventory
from inventory.selector import compile_selector
from modules.registry import get_module
from protocol.action import MAX_NAME, Operation, make_action
from protocol.envelope import Envelope
from protocol.errors import ActionError, ParamError, SelectorError, UsageError
from protocol.signing import Signer

StopCondition = Literal["matched", "nomatch", "failed"]
STOP_CONDITIONS: tuple[StopCondition, ...] = ("matched", "nomatch", "failed")
_TOP_KEYS = {"name", "description", "target", "expire", "steps"}
_STEP_KEYS = {
    "name",
    "description",
    "target",
    "module",
    "params",
    "expire",
    "stop_if",
    "only_hosts_matched_by",
}
MAX_STEPS = 64


class RunbookError(UsageError):
    """A runbook file that cannot be run; the message names the file, the step and the key."""


@dataclass(frozen=True)
class Step:
    index: int
    name: str
    module: str
    params: dict[str, Any]
    target: str
    expire: int
    description: str = ""
    stop_if: tuple[StopCondition, ...] = ()
    only_hosts_matched_by: str | None = None


@dataclass(frozen=True)
class Runbook:
    path: Path
    name: str
    description: str
    steps: tuple[Step, ...]


# -- loading and checking ----------------------------------------------------------------------
def load_runbook(path: str | Path) -> Runbook:
    """Read and check a runbook completely (modules, params, selectors, references)."""
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise RunbookError(f"{path}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise RunbookError(f"{path.name}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as err:
        raise RunbookError(f"{path.name}: invalid TOML: {err}") from None
    return parse_runbook(document, path)


def parse_runbook(document: dict[str, Any], path: Path) -> Runbook:
    label = path.name
    if unknown := sorted(set(document) - _TOP_KEYS):
        raise RunbookError(f"{label}: {unknown[0]}: unknown key (expected {_keys(_TOP_KEYS)})")
    name = _string(document, "name", label, default=path.stem)
    description = _string(document, "description", label, default="")
    default_target = _string(document, "target", label, default=None)
    default_expire = _string(document, "expire", label, default="5m")
    if default_target is not None:
        _selector(default_target, f"{label}: target")
    _duration(default_expire, f"{label}: expire")
    raw_steps = document.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise RunbookError(f"{label}: steps: expected at least one [[steps]] table")
    if len(raw_steps) > MAX_STEPS:
        raise RunbookError(f"{label}: steps: at most {MAX_STEPS} steps")
    steps: list[Step] = []
    for index, raw in enumerate(raw_steps):
        steps.append(_parse_step(raw, index, label, steps, default_target, default_expire))
    return Runbook(path, name, description, tuple(steps))


def _parse_step(
    raw: Any,
    index: int,
    label: str,
    earlier: list[Step],
    default_target: str | None,
    default_expire: str,
) -> Step:
    where = f"{label}: steps[{index}]"
    if not isinstance(raw, dict):
        raise RunbookError(f"{where}: expected a table")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise RunbookError(f"{where}: name: expected a non-empty string")
    where = f'{where} (name "{printable(name)}")'
    if unknown := sorted(set(raw) - _STEP_KEYS):
        raise RunbookError(f"{where}: {unknown[0]}: unknown key (expected {_keys(_STEP_KEYS)})")
    if len(name) > MAX_NAME // 2:
        raise RunbookError(f"{where}: name: longer than {MAX_NAME // 2} characters")
    if any(step.name == name for step in earlier):
        raise RunbookError(f"{where}: name: another step is already called {name!r}")
    module_name = raw.get("module")
    if not isinstance(module_name, str):
        raise RunbookError(f"{where}: module: expected a module name")
    module = get_module(module_name)
    if module is None:
        raise RunbookError(
            f"{where}: module: unknown module {module_name!r}; see `spyglass modules list`"
        )
    params = raw.get("params", {})
    if not isinstance(params, dict):
        raise RunbookError(f"{where}: params: expected a table")
    try:
        module.validate(params)
        make_action(name, "all", [Operation(module_name, params)])  # the action schema itself
    except ParamError as err:
        problem = err.message.removeprefix(f"{module_name}: ")
        raise RunbookError(f"{where}: params.{problem}") from None
    except ActionError as err:
        problem = err.message.split("params", 1)[-1].lstrip(".:")
        raise RunbookError(f"{where}: params.{problem}") from None
    target = _string(raw, "target", where, default=default_target)
    if target is None:
        raise RunbookError(f"{where}: target: missing (and the runbook sets no default target)")
    _selector(target, f"{where}: target")
    expire = _duration(_string(raw, "expire", where, default=default_expire), f"{where}: expire")
    description = _string(raw, "description", where, default="")
    stop_if = _stop_if(raw.get("stop_if", []), f"{where}: stop_if")
    after = raw.get("only_hosts_matched_by")
    if after is not None:
        if not isinstance(after, str):
            raise RunbookError(f"{where}: only_hosts_matched_by: expected a step name")
        if not any(step.name == after for step in earlier):
            later = " (steps run in order: it must come earlier)" if after == name else ""
            raise RunbookError(
                f"{where}: only_hosts_matched_by: no earlier step is called {after!r}{later}"
            )
    return Step(
        index,
        name,
        module_name,
        params,
        target,
        expire,
        description or "",
        stop_if,
        after,
    )


def _string(table: dict[str, Any], key: str, where: str, *, default: Any) -> Any:
    value = table.get(key, default)
    if value is not default and not isinstance(value, str):
        raise RunbookError(f"{where}: {key}: expected a string")
    return value


def _selector(text: str, where: str) -> None:
    try:
        compile_selector(text)
    except SelectorError as err:
        raise RunbookError(f"{where}: {err.message}") from None


def _duration(text: str, where: str) -> int:
    try:
        return parse_duration(text)
    except UsageError as err:
        raise RunbookError(f"{where}: {err.message}") from None


def _stop_if(value: Any, where: str) -> tuple[StopCondition, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise RunbookError(f"{where}: expected one of {', '.join(STOP_CONDITIONS)} or a list")
    for item in items:
        if item not in STOP_CONDITIONS:
            raise RunbookError(f"{where}: {item!r} is not one of {', '.join(STOP_CONDITIONS)}")
    return tuple(items)


def _keys(keys: set[str]) -> str:
    return ", ".join(sorted(keys))


# -- running -----------------------------------------------------------------------------------
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
        return {
            "name": self.name,
            "module": self.module,
            "target": self.target,
            "status": self.status,
            "note": self.note,
            "action_id": self.action_id,
            "hosts": self.hosts,
            "matched": self.matched,
            "nomatch": self.nomatch,
            "failed": self.failed,
            "matches": self.matches,
            "elapsed_ms": self.elapsed_ms,
            "matched_hosts": self.matched_hosts,
            "failed_hosts": self.failed_hosts,
            "stopped": self.stopped,
        }


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


class RunbookRunner:
    """Signs and runs a runbook's steps in order over one connection pool."""

    def __init__(
        self,
        runbook: Runbook,
        inventory: Inventory,
        pool: Pool,
        store: Store,
        signer: Signer,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        progress: TextIO = sys.stderr,
    ) -> None:
        self.runbook = runbook
        self.inventory = inventory
        self.pool = pool
        self.store = store
        self.signer = signer
        self.concurrency = concurrency
        self.progress = progress

    async def run(self) -> RunbookReport:
        report = RunbookReport(self.runbook, time.time(), [])
        start = time.monotonic()
        matched_by: dict[str, set[str]] = {}
        stopped: str | None = None
        for step in self.runbook.steps:
            result = StepReport(step.name, step.module, step.target)
            report.steps.append(result)
            if stopped is not None:
                result.note = stopped
                continue
            hosts = self._hosts(step, matched_by, result)
            if hosts:
                await self._run_step(step, hosts, result)
                matched_by[step.name] = set(result.matched_hosts)
                if reason := _stop_reason(step, result):
                    result.stopped = reason
                    stopped = f"not run: the runbook stopped after step {step.name!r} ({reason})"
            self._say(step, result)
        report.elapsed_ms = int((time.monotonic() - start) * 1000)
        return report

    def _hosts(self, step: Step, matched_by: dict[str, set[str]], result: StepReport) -> list[Host]:
        hosts = self.inventory.select(step.target)
        if not hosts:
            result.status, result.note = "skipped", "the target matches no host of the inventory"
            return []
        if step.only_hosts_matched_by is not None:
            wanted = matched_by.get(step.only_hosts_matched_by, set())
            hosts = [h for h in hosts if h.name in wanted]
            if not hosts:
                result.status = "skipped"
                result.note = f"no host matched by step {step.only_hosts_matched_by!r}"
                return []
            result.note = f"only hosts matched by step {step.only_hosts_matched_by!r}"
        return hosts

    async def _run_step(self, step: Step, hosts: list[Host], result: StepReport) -> None:
        description = step.description
        if step.only_hosts_matched_by:
            names = ", ".join(h.name for h in hosts)
            description = (description + "\n" if description else "") + (
                f"runbook {self.runbook.name!r}: only hosts matched by step "
                f"{step.only_hosts_matched_by!r}: {names}"
            )[:4000]
        action = make_action(
            f"{self.runbook.name}: {step.name}"[:MAX_NAME],
            step.target,
            [Operation(step.module, step.params)],
            expire_seconds=step.expire,
            description=description,
        )
        envelope = await asyncio.to_thread(self.signer.sign, Envelope(action))
        result.status, result.action_id, result.hosts = "ran", action.id, len(hosts)

        done = 0

        def count(event: Event) -> None:
            nonlocal done
            if isinstance(event, MatchEvent):
                result.matches += 1
            elif isinstance(event, HostEvent):
                done += 1
                if self.progress.isatty():
                    self.progress.write(f"\r  {printable(step.name)}: {done}/{len(hosts)} hosts")

        investigation = Investigation(envelope, hosts, self.pool, self.store, self.concurrency)
        summary = await investigation.run(count)
        result.matched = summary.count("matched")
        result.nomatch = summary.count("nomatch")
        result.failed = summary.failed
        result.elapsed_ms = summary.elapsed_ms
        for r in sorted(summary.results.values(), key=lambda r: r.host):
            if r.status == "matched":
                result.matched_hosts.append(r.host)
            elif r.status != "nomatch":
                result.failed_hosts.append(
                    {"host": r.host, "status": r.status, "reason": r.reason, "detail": r.detail}
                )

    def _say(self, step: Step, result: StepReport) -> None:
        prefix = "\r" if self.progress.isatty() else ""
        if result.status == "ran":
            line = (
                f"step {step.index + 1} {step.name!r}: {result.hosts} hosts, {result.matched} "
                f"matched, {result.nomatch} no match, {result.failed} failed, {result.matches} "
                f"rows (action {result.action_id})"
            )
        else:
            line = f"step {step.index + 1} {step.name!r}: {result.status}: {result.note}"
        self.progress.write(prefix + printable(line) + "\n")
        if result.stopped:
            self.progress.write(f"runbook stopped: {result.stopped}\n")
        self.progress.flush()


def _stop_reason(step: Step, result: StepReport) -> str | None:
    for condition in step.stop_if:
        if condition == "matched" and result.matched:
            return f"stop_if = matched: {result.matched} host(s) matched"
        if condition == "nomatch" and not result.matched:
            return "stop_if = nomatch: no host matched"
        if condition == "failed" and result.failed:
            return f"stop_if = failed: {result.failed} host(s) failed"
    return None


def render(report: RunbookReport, *, as_json: bool) -> str:
    if as_json:
        return json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n"
    return report.to_markdown()


__all__ = [
    "Runbook",
    "RunbookError",
    "RunbookReport",
    "RunbookRunner",
    "Step",
    "StepReport",
    "load_runbook",
    "render",
]
