"""``spyglass results``: list, show, diff and prune past investigations from the store; resume a
run that did not reach every host, follow one that another console is writing."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from console.actions.compose import parse_duration
from console.cli.common import (
    command,
    command_group,
    fan_out,
    json_flag,
    launch_flags,
    open_inventory,
    open_store,
)
from console.results import history, stack
from console.results.output import (
    HOST_HEADER,
    JsonLines,
    TextOutput,
    columns_of,
    host_line,
    match_line,
)
from console.results.provenance import clock
from console.results.stack import PREVIOUS_RUNS
from console.results.store import Store
from console.results.text import json_line, plural, printable
from console.results.writer import writer_alive
from protocol.errors import UsageError


def add_results(commands: Any) -> None:
    sub = command_group(commands, "results", "past investigations in the results store")
    rlist = command(
        sub, "list", cmd_list, help="one line per run, newest first, with its provenance"
    )
    json_flag(rlist, "one JSON object per run")
    show = command(sub, "show", cmd_show, help="a run's provenance, hosts and matches")
    show.add_argument("id", help=f"run (action) id, a unique prefix, or {LAST!r} (the newest)")
    fmt = show.add_mutually_exclusive_group()
    json_flag(fmt, "JSON lines, as `run --json` printed")
    fmt.add_argument("--csv", action="store_true", help="matches as CSV, with their provenance")
    diff = command(
        sub,
        "diff",
        cmd_diff,
        help="hosts and rows that appeared or disappeared",
        description="Exit status 0 if the runs found the same, 1 if they differ, 2 if they do "
        "not compare (different modules).",
    )
    diff.add_argument("id1")
    diff.add_argument("id2")
    json_flag(diff, "one JSON object")
    resume = command(
        sub,
        "resume",
        cmd_resume,
        help="send a run's action again to its hosts without a final answer, completing the run",
        description="Hosts that answered (or whose agent refused the action) are not sent it "
        "again; -t narrows the hosts that are.",
    )
    resume.add_argument("id", help="run id, or a unique prefix")
    launch_flags(resume, target_required=False)
    follow = command(
        sub,
        "follow",
        cmd_follow,
        help="print a run's events as another console stores them, until it ends",
        description="Exit status as `run` once the run ends; "
        f"{EXIT_WRITER_GONE} if the console writing it is gone first (the run is unfinished: "
        "`results resume` completes it).",
    )
    follow.add_argument("id", help="run id, or a unique prefix")
    json_flag(follow, "JSON lines, as `run --json` prints")
    follow.add_argument("--interval", type=float, default=0.2, help=argparse.SUPPRESS)
    stacked = command(
        sub, "stack", cmd_stack, help="a run's matches grouped by a column, rarest first"
    )
    stacked.add_argument("id", help="run (action) id, or a unique prefix")
    stacked.add_argument("--by", required=True, metavar="COLUMN", help="e.g. sha256, version")
    stacked.add_argument(
        "--previous",
        type=int,
        default=PREVIOUS_RUNS,
        metavar="N",
        help="flag values seen in none of the N previous runs of the same query",
    )
    json_flag(stacked, "one JSON line per value")
    prune = command(sub, "prune", cmd_prune, help="delete old runs")
    prune.add_argument("--older-than", required=True, help="e.g. 30d")


#: The id that names the newest run: ``spyglass results show last``.
LAST = "last"

#: `results follow`: the run is unfinished and the console that wrote it is gone.
EXIT_WRITER_GONE = 5


def _run(store: Store, run_id: str) -> Any:
    if run_id == LAST:
        runs = store.runs()
        if not runs:
            raise UsageError("the results store holds no run yet")
        return runs[0]
    run = store.run(run_id)
    if run is None:
        raise UsageError(f"no single run matches {run_id!r}; see `spyglass results list`")
    return run


def run_state(store: Store, run: Any) -> str:
    """``running`` until the run's end is stored (``unfinished`` if the console writing it is
    gone: `results resume` completes it), ``cancelled`` if hosts were cancelled, else ``done``."""
    if run["finished"] is None:
        return "running" if writer_alive(run) else "unfinished"
    cancelled = any(h.status == "cancelled" for h in store.host_results(run["id"]))
    return "cancelled" if cancelled else "done"


LIST_COLUMNS = [
    "id",
    "started",
    "state",
    "module",
    "params",
    "target",
    "signers",
    "hosts",
    "matched",
    "nomatch",
    "failed",
    "name",
]


def cmd_list(args: argparse.Namespace) -> int:
    store = open_store(args)
    if not args.json:
        print("\t".join(LIST_COLUMNS))
    for run in store.runs():
        origin = history.run_provenance(store, run["id"])
        row = {
            "id": run["id"],
            "started": clock(run["started"]),
            "state": run_state(store, run),
            "module": ",".join(origin.modules),
            "params": origin.params,
            "target": origin.target,
            "signers": " ".join(s[-16:] for s in origin.signers),
            "hosts": run["hosts"],
            "matched": run["matched"],
            "nomatch": run["nomatch"],
            "failed": run["failed"],
            "name": run["name"],
        }
        if args.json:
            row["signers"] = list(origin.signers)
            print(json_line(row))
        else:
            print("\t".join(printable(row[c]) for c in LIST_COLUMNS))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    store = open_store(args)
    run = _run(store, args.id)
    if args.json:
        history.write_jsonl(store, run["id"], sys.stdout)
        return 0
    if args.csv:
        history.write_csv(store, run["id"], run["modules"].split(","), sys.stdout)
        return 0
    origin = history.run_provenance(store, run["id"])
    for line in origin.lines():
        print(printable(line))
    ended = clock(run["finished"]) or "not finished"
    print(f"  run {clock(run['started'])} to {ended} ({run_state(store, run)})")
    headers: set[str] = set()
    for match in store.match_events(run["id"]):
        if match.module not in headers:
            headers.add(match.module)
            print("\n" + "\t".join(["host", *columns_of(match.module)]))
        print(match_line(match))
    print("\n" + HOST_HEADER)
    for host in store.host_results(run["id"]):
        print(host_line(host))
    for name in store.unanswered(run["id"]):  # a console stopped before these hosts reported
        print(f"{printable(name)}\tpending\t0\t0\tno result: `spyglass results resume {run['id']}`")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    store = open_store(args)
    before, after = _run(store, args.id1), _run(store, args.id2)
    diff = history.diff_runs(store, before["id"], after["id"])
    if args.json:
        print(json_line(diff.to_json()))
        return 1 if diff.changed else 0
    for host, old, new in diff.hosts:
        print(f"host\t{printable(host)}\t{old} -> {new}")
    for sign, rows in (("-", diff.removed), ("+", diff.added)):
        for host, data in rows:
            row = json.dumps(data, sort_keys=True, ensure_ascii=False)
            print(f"{sign}\t{printable(host)}\t{printable(row)}")
    return 1 if diff.changed else 0


def cmd_stack(args: argparse.Namespace) -> int:
    store = open_store(args)
    run = _run(store, args.id)
    columns = [c for m in run["modules"].split(",") for c in columns_of(m)]
    if args.by not in columns:
        raise UsageError(f"no column {args.by!r} in this run; its columns: {', '.join(columns)}")
    counted = stack.stack_run(store, run["id"], args.by)
    earlier = stack.previous_runs_of(store, run["id"], max(0, args.previous))
    seen = stack.earlier_values(store, earlier, args.by) if earlier else None
    rows = counted.ranked(seen)
    if args.json:
        for row in rows:
            print(json_line(row.to_json()))
        return 0
    print(f"{len(rows)} values of {args.by}; new: not in the {len(earlier)} previous run(s)")
    print("hosts\trows\tnew\tvalue")
    for row in rows:
        print(f"{row.hosts}\t{row.rows}\t{'new' if row.new else ''}\t{printable(row.value)}")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    removed = open_store(args).delete_older_than(parse_duration(args.older_than))
    print(f"removed {plural(removed, 'run')}")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from console.results.resume import plan_resume

    store = open_store(args)
    inventory = open_inventory(args)
    plan = plan_resume(store, _run(store, args.id)["id"], inventory, args.target)
    for problem in plan.unknown:
        print(f"spyglass: not resumed: {problem}", file=sys.stderr)
    if not plan.hosts:
        print(f"run {plan.run_id}: no host to send the action to again", file=sys.stderr)
    return fan_out(args, inventory, plan.envelope, plan.hosts, store, resume=plan.run_id)


def cmd_follow(args: argparse.Namespace) -> int:
    """Poll the store for the run's new events until it ends, or until its console is gone."""
    from console.results.follow import Follow

    store = open_store(args)
    first = _run(store, args.id)
    output = JsonLines() if args.json else TextOutput("all")
    if isinstance(output, JsonLines):
        output.begin(json.loads(first["envelope"]))  # the action first, as `run --json` does
    follow = Follow(store, first["id"])
    while True:
        events, end = follow.poll()
        for event in events:
            output(event)
        if end is not None:
            break
        time.sleep(args.interval)
    if end == "deleted":
        raise UsageError(f"run {follow.run_id} was deleted while followed")
    if end == "gone":
        print(f"spyglass: {follow.gone_text()}", file=sys.stderr)
        return EXIT_WRITER_GONE
    summary = history.run_summary(store, follow.run_id)
    output.summary(summary)
    return summary.exit_status()
