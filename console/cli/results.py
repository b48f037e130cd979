"""``spyglass results``: list, show, diff and prune past investigations from the store."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from console.actions.compose import parse_duration
from console.cli.common import open_store
from console.results import history, stack
from console.results.output import HOST_HEADER, columns_of, host_line, match_line
from console.results.stack import PREVIOUS_RUNS
from console.results.store import Store
from console.results.text import json_line, printable
from protocol.errors import UsageError


def add_results(commands: Any) -> None:
    results = commands.add_parser("results", help="past investigations in the results store")
    sub = results.add_subparsers(dest="results_command", required=True)
    sub.add_parser("list", help="one line per run").set_defaults(handler=cmd_list)
    show = sub.add_parser("show", help="a run's hosts and matches")
    show.add_argument("id", help="run (action) id, or a unique prefix")
    fmt = show.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="JSON lines, as `run --json` prints")
    fmt.add_argument("--csv", action="store_true", help="matches as CSV")
    show.set_defaults(handler=cmd_show)
    diff = sub.add_parser("diff", help="hosts and rows that appeared or disappeared")
    diff.add_argument("id1")
    diff.add_argument("id2")
    diff.set_defaults(handler=cmd_diff)
    stack = sub.add_parser("stack", help="a run's matches grouped by a column, rarest first")
    stack.add_argument("id", help="run (action) id, or a unique prefix")
    stack.add_argument("--by", required=True, metavar="COLUMN", help="e.g. sha256, version")
    stack.add_argument(
        "--previous",
        type=int,
        default=PREVIOUS_RUNS,
        metavar="N",
        help="flag values seen in none of the N previous runs of the same query",
    )
    stack.add_argument("--json", action="store_true", help="one JSON line per value")
    stack.set_defaults(handler=cmd_stack)
    prune = sub.add_parser("prune", help="delete old runs")
    prune.add_argument("--older-than", required=True, help="e.g. 30d")
    prune.set_defaults(handler=cmd_prune)


def _run(store: Store, run_id: str) -> Any:
    run = store.run(run_id)
    if run is None:
        raise UsageError(f"no single run matches {run_id!r}; see `spyglass results list`")
    return run


def cmd_list(args: argparse.Namespace) -> int:
    store = open_store(args)
    print("id\tstarted\tname\ttarget\thosts\tmatched\tnomatch\tfailed")
    for run in store.runs():
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run["started"]))
        print(
            f"{run['id']}\t{when}\t{printable(run['name'])}\t{printable(run['target'])}\t"
            f"{run['hosts']}\t{run['matched']}\t{run['nomatch']}\t{run['failed']}"
        )
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
    print(f"{run['id']}  {printable(run['name'])}  target: {printable(run['target'])}")
    for match in store.match_events(run["id"]):
        print(match_line(match))
    print("\n" + HOST_HEADER)
    for host in store.host_results(run["id"]):
        print(host_line(host))
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    store = open_store(args)
    before, after = _run(store, args.id1), _run(store, args.id2)
    diff = history.diff_runs(store, before["id"], after["id"])
    for host, old, new in diff.hosts:
        print(f"host\t{printable(host)}\t{old} -> {new}")
    for sign, rows in (("-", diff.removed), ("+", diff.added)):
        for host, data in rows:
            row = json.dumps(data, sort_keys=True, ensure_ascii=False)
            print(f"{sign}\t{printable(host)}\t{printable(row)}")
    return 0


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
    print(f"removed {removed} run(s)")
    return 0
