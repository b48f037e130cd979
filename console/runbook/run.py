"""Running a runbook: each step signed just before it launches, run through ``Investigation`` over
one shared connection pool, and stopped or narrowed by what the earlier steps found."""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import KW_ONLY, dataclass
from typing import TextIO

from console.actions.compose import validated_operation
from console.fanout.dispatch import DEFAULT_CONCURRENCY, Dispatcher
from console.fanout.investigation import Investigation
from console.fanout.retry import until_expiry
from console.fanout.ssh import Pool
from console.fanout.ssh_transport import SshTransport
from console.results.records import Event, HostEvent, MatchEvent
from console.results.store import Store
from console.results.text import plural, printable
from console.runbook.parse import Runbook, Step
from console.runbook.report import RunbookReport, StepReport
from inventory.model import Host, Inventory
from protocol.action import MAX_NAME, make_action
from protocol.envelope import Envelope
from protocol.signing import Signer


@dataclass(eq=False)
class RunbookRunner:
    """Signs and runs a runbook's steps in order over one connection pool."""

    runbook: Runbook
    inventory: Inventory
    pool: Pool
    store: Store
    signer: Signer
    _: KW_ONLY
    concurrency: int = DEFAULT_CONCURRENCY
    progress: TextIO = sys.stderr

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
            [validated_operation(step.module, step.params)],  # stamped when sent
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
                    self.progress.write(
                        f"\r  {printable(step.name)}: {done}/{plural(len(hosts), 'host')}"
                    )

        dispatcher = Dispatcher(
            SshTransport(self.pool),
            concurrency=self.concurrency,
            retry=until_expiry(step.until_expiry),
        )
        investigation = Investigation(envelope, hosts, dispatcher, self.store)
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
                f"step {step.index + 1} {step.name!r}: {plural(result.hosts, 'host')}, "
                f"{result.matched} matched, {result.nomatch} no match, {result.failed} failed, "
                f"{result.matches} rows (action {result.action_id})"
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
            return f"stop_if = matched: {plural(result.matched, 'host')} matched"
        if condition == "nomatch" and not result.matched:
            return "stop_if = nomatch: no host matched"
        if condition == "failed" and result.failed:
            return f"stop_if = failed: {plural(result.failed, 'host')} failed"
    return None
