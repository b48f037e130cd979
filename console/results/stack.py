"""Stacking: a run's matches grouped by one column, with the number of hosts per value.

The first analysis on fleet results: among a thousand hosts with the same package, the one with
another version (or another hash, another key fingerprint) is the value held by the fewest hosts.
``Stack`` counts incrementally (the TUI feeds it rows as they stream in); ``stack_run`` counts a
stored run; ``earlier_values`` says which values the previous runs of the same query saw, so a
value seen in none of them is flagged new. Shared by ``spyglass results stack`` and the TUI.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from console.results.store import Store

PREVIOUS_RUNS = 5
"""How many earlier runs of the same query decide whether a value is new."""


def stack_key(value: Any) -> str | None:
    """The value as one comparable string: text as it is, anything else as compact JSON (a list
    kept as a tuple counts as the same list); None for no value."""
    if value is None:
        return None
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if kind is int:
        return str(value)  # what json.dumps writes, faster (a stack may count 100,000 rows)
    if kind is tuple:
        value = list(value)
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class StackRow:
    value: str
    hosts: int
    rows: int
    new: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "hosts": self.hosts, "rows": self.rows, "new": self.new}


class Stack:
    """Counts of one column's values: rows and distinct hosts per value.

    Kept lean for 100,000 distinct values: a value held by one host keeps that host's name, not
    a set (a set per value would add 100,000 containers to every garbage collection); the
    host and row counts live in two dicts filled in the same order, so ranking sorts plain
    tuples.
    """

    def __init__(self, column: str) -> None:
        self.column = column
        self._holders: dict[str, str | set[str]] = {}
        self.host_counts: dict[str, int] = {}
        self.rows: dict[str, int] = {}
        self.missing = 0
        """Rows without a value in the column (a module that leaves it empty, or another
        module's row)."""
        self.version = 0

    def add(self, host: str, value: Any) -> None:
        self.add_pairs(((host, value),))

    def add_pairs(self, pairs: Iterable[tuple[str, Any]]) -> None:
        """Count ``(host, value)`` pairs (the TUI feeds each tick's new rows at once)."""
        holders, counts, rows, key_of = self._holders, self.host_counts, self.rows, stack_key
        missing = 0
        for host, value in pairs:
            key = value if type(value) is str else key_of(value)
            if key is None:
                missing += 1
                continue
            held = holders.get(key)
            if held is None:
                holders[key] = host
                counts[key] = 1
                rows[key] = 1
                continue
            rows[key] += 1
            if type(held) is str:
                if held != host:
                    holders[key] = {held, host}
                    counts[key] = 2
            elif host not in held:
                held.add(host)  # type: ignore[union-attr]
                counts[key] += 1
        self.missing += missing
        self.version += 1

    def add_data(self, host: str, data: Any) -> None:
        """One match's data dict (from the store or an event)."""
        self.add(host, data.get(self.column) if isinstance(data, dict) else None)

    def __len__(self) -> int:
        return len(self.rows)

    def ranked_keys(self) -> list[tuple[int, int, str]]:
        """``(hosts, rows, value)`` for every value, rarest first: fewest hosts, then fewest
        rows, then by value."""
        counts, rows = self.host_counts, self.rows
        return sorted(zip(counts.values(), rows.values(), counts, strict=True))

    def ranked(self, seen_before: set[str] | None = None) -> list[StackRow]:
        """Every value, rarest first. With ``seen_before`` (``earlier_values``), a value not in
        it is flagged new."""
        flag = seen_before is not None
        return [
            StackRow(v, h, r, flag and v not in seen_before)  # type: ignore[operator]
            for h, r, v in self.ranked_keys()
        ]

    def hosts_of(self, value: str) -> list[str]:
        held = self._holders.get(value)
        if held is None:
            return []
        return [held] if isinstance(held, str) else sorted(held)


def stack_run(store: Store, run_id: str, column: str) -> Stack:
    stack = Stack(column)
    for match in store.matches(run_id):
        stack.add_data(match["host"], match["data"])
    return stack


def operations_of(envelope_json: str) -> Any:
    """The operations of a stored run (modules and parameters): what makes two runs the same
    query, whatever their target, name or time."""
    try:
        envelope = json.loads(envelope_json)
        return envelope["action"]["operations"]
    except (ValueError, KeyError, TypeError):
        return None


def previous_runs(
    store: Store, operations: Any, before: float, *, exclude: str = "", count: int = PREVIOUS_RUNS
) -> list[str]:
    """Ids of the ``count`` latest runs with these ``operations`` started before ``before``."""
    earlier = [
        r["id"]
        for r in store.runs()  # newest first
        if r["id"] != exclude
        and r["started"] < before
        and operations_of(r["envelope"]) == operations
    ]
    return earlier[:count]


def previous_runs_of(store: Store, run_id: str, count: int = PREVIOUS_RUNS) -> list[str]:
    """The ``count`` latest runs of the same query as the stored run ``run_id``, before it."""
    run = store.run(run_id)
    if run is None:
        return []
    operations = operations_of(run["envelope"])
    return previous_runs(store, operations, run["started"], exclude=run["id"], count=count)


def earlier_values(store: Store, run_ids: Iterable[str], column: str) -> set[str]:
    """Every value of ``column`` in the runs ``run_ids``."""
    seen: set[str] = set()
    for run_id in run_ids:
        for match in store.matches(run_id):
            data = match["data"]
            key = stack_key(data.get(column) if isinstance(data, dict) else None)
            if key is not None:
                seen.add(key)
    return seen
