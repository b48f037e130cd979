"""The state of one investigation as the watch screen shows it, fed by engine events.

The engine's sink only appends to ``pending`` (cheap, on the event loop); the screen drains the
queue on a timer, a bounded number of events per tick, so a flood of matches never freezes the
interface. No Textual here: the benchmark and the tests drive it directly.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from console.dispatch import Event, HostEvent, HostResult, MatchEvent, StateEvent
from modules.registry import get_module
from tui import format as fmt
from tui.rows import ColumnSpec, Row, RowModel, make_row

FAILED_KINDS = (
    "unreachable",
    "auth-failed",
    "hostkey-mismatch",
    "rejected",
    "timeout",
    "error",
    "cancelled",
)
HOST_COLUMNS = (
    ColumnSpec("host", "host", "text", 8, 40),
    ColumnSpec("status", "status", "text", 10, 24),
    ColumnSpec("matches", "matches", "int", 7, 10),
    ColumnSpec("elapsed", "elapsed", "text", 8, 10),
    ColumnSpec("reason", "reason / detail", "text", 16, 80),
)


def match_columns(modules: Iterable[str]) -> list[ColumnSpec]:
    """``host`` then each module's declared result columns (once each, in declaration order)."""
    columns = [ColumnSpec("host", "host", "text", 8, 40)]
    seen = {"host"}
    for name in dict.fromkeys(modules):
        module = get_module(name)
        for column in module.columns if module else ():
            if column.name not in seen:
                seen.add(column.name)
                columns.append(ColumnSpec(column.name, column.name, column.kind, 4, 72))
    return columns


@dataclass
class HostInfo:
    """What is known about one host: live state, then its final result."""

    name: str
    state: str = "queued"
    result: HostResult | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def status(self) -> str:
        return self.result.status if self.result else self.state


class RunState:
    """One investigation: hosts, matches, counters; live or reopened from the store."""

    def __init__(
        self,
        action: dict[str, Any],
        host_names: Iterable[str],
        *,
        live: bool = True,
    ) -> None:
        self.action = action
        self.id: str = action.get("id", "")
        self.name: str = action.get("name", "")
        self.target: str = action.get("target", "")
        self.modules = [op.get("module", "?") for op in action.get("operations", [])]
        self.live = live
        self.finished = not live
        self.cancelling = False
        self.error: str | None = None
        self.pending: deque[Event] = deque()
        self.hosts: dict[str, HostInfo] = {name: HostInfo(name) for name in host_names}
        self.host_model = RowModel(HOST_COLUMNS)
        self.match_model = RowModel(match_columns(self.modules))
        self._match_formatters = [(c.key, fmt.formatter(c.kind)) for c in self.match_model.columns]
        self.match_count = 0
        self.counts: Counter[str] = Counter()
        self._dirty_hosts: dict[str, None] = dict.fromkeys(self.hosts)  # ordered
        self.flush_hosts()

    # -- feeding ---------------------------------------------------------------------------
    def sink(self, event: Event) -> None:
        """The engine's sink: queue only, the screen applies events on its timer."""
        self.pending.append(event)

    def drain(self, budget: int = 4000) -> bool:
        """Apply up to ``budget`` queued events to the models; True if anything changed."""
        if not self.pending:
            return False
        matches: list[Row] = []
        pending = self.pending
        keyed = self._match_formatters
        host_fmt = keyed[0][1]
        rest = keyed[1:]
        for _ in range(min(budget, len(pending))):
            event = pending.popleft()
            if type(event) is MatchEvent:
                data = event.data if type(event.data) is dict else {}
                raw = (event.host, *[data.get(k) for k, _ in rest])
                cells = (host_fmt(event.host), *[f(data.get(k)) for k, f in rest])
                matches.append(Row(cells, raw, ref=event))
            elif type(event) is StateEvent:
                info = self._host(event.host)
                if info.result is None:
                    info.state = event.state
                    if event.state == "connecting":
                        info.started = time.monotonic()
                    self._dirty_hosts[event.host] = None
            elif type(event) is HostEvent:
                info = self._host(event.result.host)
                info.result = event.result
                self._dirty_hosts[info.name] = None
        if matches:
            self.match_model.append(matches)
            self.match_count += len(matches)
        self.flush_hosts()
        return True

    def add_matches(self, records: Iterable[dict[str, Any]]) -> None:
        """Rows from the store (a reopened run): ``{host, op, module, data}`` dicts."""
        columns = self.match_model.columns
        keys = [c.key for c in columns[1:]]
        rows = []
        for record in records:
            event = MatchEvent(record["host"], record["op"], record["module"], record["data"])
            data = event.data if isinstance(event.data, dict) else {}
            rows.append(
                make_row(columns, [event.host, *(data.get(k) for k in keys)], fmt.cell, ref=event)
            )
        self.match_model.append(rows)
        self.match_count += len(rows)

    def set_result(self, result: HostResult) -> None:
        self._host(result.host).result = result
        self._dirty_hosts[result.host] = None

    def flush_hosts(self) -> None:
        """Rewrite the rows of hosts that changed and recount the counters."""
        if not self._dirty_hosts:
            return
        for name in self._dirty_hosts:
            self.host_model.upsert(self._host_row(self.hosts[name]))
        self._dirty_hosts.clear()
        self.counts = Counter(info.status for info in self.hosts.values())

    def _host(self, name: str) -> HostInfo:
        info = self.hosts.get(name)
        if info is None:
            info = self.hosts[name] = HostInfo(name)
        return info

    def _host_row(self, info: HostInfo) -> Row:
        result = info.result
        if result is None:
            values: list[Any] = [info.name, info.state, None, None, ""]
        else:
            reason = result.reason or ""
            detail = (
                f"{reason}: {result.detail}"
                if reason and result.detail
                else (reason or result.detail)
            )
            values = [
                info.name,
                result.status,
                result.matches,
                fmt.duration_ms(result.elapsed_ms),
                detail,
            ]
        return make_row(HOST_COLUMNS, values, fmt.cell, key=info.name, ref=info)

    # -- summaries -------------------------------------------------------------------------
    @property
    def done_hosts(self) -> int:
        return sum(1 for info in self.hosts.values() if info.result is not None)

    def failed_by_kind(self) -> dict[str, int]:
        return {kind: self.counts[kind] for kind in FAILED_KINDS if self.counts[kind]}

    def rejected_reasons(self) -> Counter[str]:
        return Counter(
            info.result.reason or "?"
            for info in self.hosts.values()
            if info.result is not None and info.result.status == "rejected"
        )

    def matches_of(self, host: str) -> list[Row]:
        return [row for row in self.match_model.rows if row.cells[0] == host]
