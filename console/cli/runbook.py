"""``spyglass runbook``: check and run TOML runbooks."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from console.cli.common import (
    command,
    command_group,
    concurrency_flag,
    json_flag,
    open_inventory,
    open_store,
    signer,
)
from console.results.text import plural, printable


def add_runbook(commands: Any) -> None:
    runbook_cmds = command_group(commands, "runbook", "TOML runbooks of steps, run in order")
    rcheck = command(
        runbook_cmds, "check", cmd_runbook_check, help="validate every step without connecting"
    )
    rcheck.add_argument("file", type=Path)
    rrun = command(
        runbook_cmds,
        "run",
        cmd_runbook_run,
        help="sign and run the steps, then write a report",
        description="Exit status as `spyglass run` (0 something matched, 1 nothing matched, "
        f"3 some host failed, 2 no step launched); with --compare-last, {EXIT_CHANGED} when the "
        "report differs from the previous run of the same runbook in the store.",
    )
    rrun.add_argument("file", type=Path)
    json_flag(rrun, "a JSON report instead of Markdown")
    rrun.add_argument(
        "--report", type=Path, metavar="FILE", help="write the report to FILE (default: stdout)"
    )
    rrun.add_argument(
        "--compare-last",
        action="store_true",
        help="compare with the previous run of this runbook in the store: the report gets the "
        f"differences, and the exit status is {EXIT_CHANGED} when something changed",
    )
    concurrency_flag(rrun)


#: ``runbook run --compare-last``: something changed since the previous run of the runbook.
EXIT_CHANGED = 4


def cmd_runbook_check(args: argparse.Namespace) -> int:
    from console.runbook.parse import load_runbook

    book = load_runbook(args.file)
    inventory = open_inventory(args) if args.inventory else None
    for step in book.steps:
        notes = []
        if step.only_hosts_matched_by:
            notes.append(f"only hosts matched by {step.only_hosts_matched_by!r}")
        if step.stop_if:
            notes.append("stop if " + " or ".join(step.stop_if))
        if inventory is not None:
            count = len(inventory.select(step.target))
            notes.append(f"{plural(count, 'host')} in {inventory.path.name}")
            if not count:
                print(
                    f"{args.file.name}: warning: step {step.name!r}: target {step.target!r} "
                    "matches no host",
                    file=sys.stderr,
                )
        extra = f" ({'; '.join(notes)})" if notes else ""
        print(
            f"{step.index + 1}. {printable(step.name)}: {step.module} on "
            f"{printable(step.target)}, expires after {step.expire} s{extra}"
        )
    print(f"{args.file}: {plural(len(book.steps), 'step')} OK", file=sys.stderr)
    return 0


def cmd_runbook_run(args: argparse.Namespace) -> int:
    from console.fanout.loop import run_async
    from console.fanout.ssh import Connector, Pool
    from console.runbook.compare import compare_last
    from console.runbook.parse import load_runbook
    from console.runbook.report import RunbookReport, render
    from console.runbook.run import RunbookRunner

    book = load_runbook(args.file)
    inventory = open_inventory(args)
    sign_with = signer(args)
    store = open_store(args)

    async def go() -> RunbookReport:
        pool = Pool(Connector(inventory))
        try:
            runner = RunbookRunner(
                book, inventory, pool, store, sign_with, concurrency=args.concurrency
            )
            return await runner.run()
        finally:
            await pool.close()

    try:
        report = run_async(go())
        comparison = compare_last(store, report) if args.compare_last else None
    finally:
        store.close()
    text = render(report, as_json=args.json)
    if comparison is not None:
        print(f"spyglass: {comparison.summary()}", file=sys.stderr)
        if args.json:
            doc = report.to_json()
            doc["changes"] = comparison.to_json()
            text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
        else:
            text += comparison.to_markdown()
    if args.report:
        args.report.write_text(text, encoding="utf-8")
        print(f"report written to {args.report}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    status = report.exit_status()
    if status == 2:
        print("spyglass: no step of the runbook was launched", file=sys.stderr)
    elif comparison is not None and comparison.changed:
        return EXIT_CHANGED
    return status
