"""The state of one investigation as the watch screen shows it, fed by engine events.

The engine's sink only appends to ``pending`` (cheap, on the event loop); the screen drains the
queue on a timer, a bounded number of events per tick, so a flood of matches never freezes the
interface. No Textual here: the benchmark and the tests drive it directly.
"""

from __future__ import annotations

import json
import math
import operator
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from console.results.follow import Follow
from console.results.records import (
    ANSWERED,
    FAILED_STATUSES,
    Event,
    HostEvent,
    HostResult,
    MatchEvent,
    RetryEvent,
    StateEvent,
)
from console.results.store import Store
from modules.registry import get_module
from tui.model import format as fmt
from tui.model import when
from tui.model.provenance import compact_operations, signer_ids
from tui.model.rows import ColumnSpec, Entry, Row, RowModel
from tui.model.when import humanize_epochs, local_time

HOST_COLUMNS = (
    ColumnSpec("host", "host", "text", 8, 40),
    ColumnSpec("status", "status", "text", 10, 24),
    ColumnSpec("matches", "matches", "int", 7, 10),
    ColumnSpec("elapsed", "elapsed", "text", 8, 10),
    ColumnSpec("reason", "reason / detail", "text", 16, 80),
)


def reason_text(reason: str | None, detail: str) -> str:
    """``reason: detail`` for the hosts table, without repeating a reason the detail starts
    with (the engine's detail for an ACL refusal may already read ``acl: ...``)."""
    reason = reason or ""
    if not reason or not detail:
        return reason or detail
    if detail == reason or detail.startswith(reason + ":"):
        return detail
    return f"{reason}: {detail}"


def replay_mark(result: HostResult) -> str:
    """``replayed (ran 14:02:11): `` for an answer the agent had given before: it had run this
    very action already, and answered from what it stored then."""
    if not result.replay:
        return ""
    return f"replayed (ran {local_time(result.ran_at)}): " if result.ran_at else "replayed: "


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
    retry: RetryEvent | None = None
    """The last failed attempt, while the host waits to be tried again (``--until-expiry``)."""
    retry_at: float = 0.0
    """When (``time.monotonic``) the next attempt starts."""
    shown_wait: int = -1
    """The seconds the row shows until the next attempt (it is rewritten when they change)."""

    @property
    def status(self) -> str:
        return self.result.status if self.result else self.state

    def wait_left(self, now: float) -> int:
        """Whole seconds until the next attempt, counted down on screen."""
        return max(0, math.ceil(self.retry_at - now))


class RunState:
    """One investigation: hosts, matches, counters; live or reopened from the store.

    Applying an event costs O(1): a match becomes one lazily formatted ``Row`` (a tuple of raw
    values, no reference to the event, so a long run does not keep 100,000 events and their
    dicts alive for the garbage collector to scan), a host update marks the host dirty and moves
    one count from its old status to the new one.
    """

    def __init__(
        self,
        action: dict[str, Any],
        host_names: Iterable[str],
        *,
        live: bool = True,
        signers: Iterable[str] = (),
        started: float | None = None,
        ended: float | None = None,
        first_state: str = "queued",
    ) -> None:
        self.action = action
        self.id: str = action.get("id", "")
        self.name: str = action.get("name", "")
        self.target: str = action.get("target", "")
        self.modules = [op.get("module", "?") for op in action.get("operations", [])]
        self.params = compact_operations(action)
        r"""``file paths=/srv name=\.php$``: what the run looked for, in one line."""
        self.signers = list(signers)
        """Key ids of the signatures the run was launched with."""
        self.started = when.clock() if started is None else started
        self.ended = ended
        """When the run ended (epoch seconds), None while it runs."""
        self.live = live
        self.finished = not live
        self.cancelling = False
        self.error: str | None = None
        self.pending: deque[Event] = deque()
        self.hosts: dict[str, HostInfo] = {name: HostInfo(name, first_state) for name in host_names}
        self.host_model = RowModel(HOST_COLUMNS)
        self.match_model = RowModel(match_columns(self.modules))
        columns = self.match_model.columns
        self._match_keys = tuple(c.key for c in columns[1:])
        self._list_columns = tuple(i for i, c in enumerate(columns) if c.kind == "list")
        keys = self._match_keys
        self._get_values: Callable[[dict[str, Any]], tuple[Any, ...]] = (
            operator.itemgetter(*keys)
            if len(keys) > 1
            else (lambda data: (data[keys[0]],))
            if keys
            else (lambda data: ())
        )
        # Per operation: the keys its module declares, and where each sits in a row.
        index = {c.key: i for i, c in enumerate(columns)}
        self._op_columns: list[tuple[frozenset[str], tuple[tuple[str, int], ...]]] = []
        for name in self.modules:
            module = get_module(name)
            declared = [c.name for c in module.columns] if module else []
            self._op_columns.append((frozenset(declared), tuple((k, index[k]) for k in declared)))
        self.match_count = 0
        self.counts: Counter[str] = Counter({first_state: len(self.hosts)} if self.hosts else {})
        self.rejected: Counter[str] = Counter()
        """Rejected hosts by reason (``acl``, ``expired``…), kept as results arrive."""
        self.until_expiry = False
        """Launched to retry unreachable hosts until the action expires."""
        self.retries = 0
        """Failed attempts to be retried so far (``--until-expiry``)."""
        self._host_rows: Counter[str] = Counter()
        """Match rows shown per host."""
        self._waiting_hosts: set[str] = set()
        self.stale: set[str] = set()
        """Hosts whose rows a new attempt's answer replaces: rows from an attempt that lost its
        connection, or from before a resume. Their first new row or answer removes the old
        rows, as the store does (console/fanout/investigation.py)."""
        self.follow: Follow | None = None
        """Set when the run is another console's, read from the store as it writes it."""
        self.writer_gone = False
        """Followed, or reopened unfinished, and the console writing it is gone."""
        self._dirty_hosts: dict[str, None] = dict.fromkeys(self.hosts)  # ordered
        self.flush_hosts()

    # -- feeding ---------------------------------------------------------------------------
    def sink(self, event: Event) -> None:
        """The engine's sink: queue only, the screen applies events on its timer."""
        self.pending.append(event)

    def drain(self, budget: int = 4000) -> bool:
        """Apply up to ``budget`` queued events to the models; True if anything changed."""
        pending = self.pending
        count = min(budget, len(pending))
        if not count:
            return False
        matches: list[Entry] = []
        add = matches.append
        popleft = pending.popleft
        match_row = self._match_row
        host_rows = self._host_rows
        stale = self.stale
        for _ in range(count):
            event = popleft()
            kind = type(event)
            if kind is MatchEvent:
                host = event.host  # type: ignore[union-attr]
                if stale and host in stale:
                    self._drop_rows(host, matches)
                add(match_row(event))  # type: ignore[arg-type]
                host_rows[host] += 1
            elif kind is StateEvent:
                info = self._host(event.host)  # type: ignore[union-attr]
                if info.result is None:
                    self._set_state(info, event.state)  # type: ignore[union-attr]
                    info.retry = None
                    self._waiting_hosts.discard(info.name)
                    if info.state == "connecting":
                        info.started = time.monotonic()
            elif kind is HostEvent:
                result = event.result  # type: ignore[union-attr]
                if stale and result.host in stale and result.status in ANSWERED:
                    self._drop_rows(result.host, matches)
                self.set_result(result)
            elif kind is RetryEvent:
                self._waiting(event)  # type: ignore[arg-type]
        if matches:
            self.match_model.extend(matches)
            self.match_count += len(matches)
        self.flush_hosts()
        return True

    def _set_state(self, info: HostInfo, state: str) -> None:
        self._recount(info.state, state)
        info.state = state
        self._dirty_hosts[info.name] = None

    def _waiting(self, event: RetryEvent) -> None:
        """A failed attempt: the host waits for its next one, rows it sent are replaced then."""
        info = self._host(event.host)
        self.retries += 1
        if info.result is not None:
            return
        self._set_state(info, "waiting")
        self._waiting_hosts.add(info.name)
        info.retry = event
        info.retry_at = time.monotonic() + event.retry_in_ms / 1000
        info.shown_wait = -1
        if self._host_rows[event.host]:
            self.stale.add(event.host)

    def _drop_rows(self, host: str, batch: list[Entry]) -> None:
        """Remove ``host``'s rows (shown, and in the ``batch`` not shown yet)."""
        self.stale.discard(host)
        kept = [entry for entry in batch if entry[0][0] != host]
        gone = len(batch) - len(kept)
        batch[:] = kept
        gone_shown = self.match_model.remove(lambda entry: entry[0][0] == host)
        self.match_count -= gone_shown
        self._host_rows[host] -= gone + gone_shown

    def tick_waiting(self, now: float | None = None) -> bool:
        """Count down the waiting hosts' next attempt; True if a row changed."""
        now = time.monotonic() if now is None else now
        for name in self._waiting_hosts:
            info = self.hosts[name]
            if info.wait_left(now) != info.shown_wait:
                self._dirty_hosts[name] = None
        changed = bool(self._dirty_hosts)
        self.flush_hosts(now)
        return changed

    def poll(self) -> bool:
        """Queue what the followed run's console stored since the last look; True once the run
        has ended (stored finished) or its console is gone."""
        if self.follow is None:
            return False
        events, end = self.follow.poll()
        self.pending.extend(events)
        if end == "gone":
            self.writer_gone = True
        elif end == "deleted":
            self.error = "the run was deleted from the store while followed"
        return end is not None

    def _match_row(self, event: MatchEvent) -> Entry:
        data = event.data if type(event.data) is dict else {}
        op = event.op
        exact_op = type(op) is int and 0 <= op < len(self._op_columns)
        try:
            # Fast path: the data has every column (a one-module action), read in C.
            values = list(self._get_values(data))
            exact = exact_op and len(data) == len(self._op_columns[op][0])
        except (KeyError, TypeError):
            values = list(map(data.get, self._match_keys))
            exact = exact_op and data.keys() == self._op_columns[op][0]
        for i in self._list_columns:
            # A list would keep the row tracked by the garbage collector; a tuple of strings
            # is not. ``format.cell`` shows both the same way.
            if type(values[i - 1]) is list:
                values[i - 1] = tuple(values[i - 1])
        # The row keeps the operation index, from which ``match_event`` rebuilds the event;
        # only a row with keys its module does not declare keeps the event itself.
        return ((event.host, *values), None, op if exact else event)

    def match_event(self, row: Row) -> MatchEvent:
        """The event a match row came from (rebuilt from its raw values)."""
        if isinstance(row.ref, MatchEvent):
            return row.ref
        op: int = row.ref
        data = {}
        for key, i in self._op_columns[op][1]:
            value = row.raw[i]
            data[key] = list(value) if type(value) is tuple else value
        return MatchEvent(row.raw[0], op, self.modules[op], data)

    def add_matches(self, records: Iterable[dict[str, Any]]) -> None:
        """Rows from the store (a reopened run): ``{host, op, module, data}`` dicts."""
        rows = [
            self._match_row(MatchEvent(r["host"], r["op"], r["module"], r["data"])) for r in records
        ]
        self.match_model.extend(rows)
        self.match_count += len(rows)
        self._host_rows.update(entry[0][0] for entry in rows)

    def set_result(self, result: HostResult) -> None:
        info = self._host(result.host)
        old = info.result
        self._recount(info.status, result.status)
        if old is not None and old.status == "rejected":
            self.rejected[old.reason or "?"] -= 1
        if result.status == "rejected":
            self.rejected[result.reason or "?"] += 1
        info.result = result
        info.retry = None
        self._waiting_hosts.discard(info.name)
        self._dirty_hosts[info.name] = None

    def _recount(self, old: str, new: str) -> None:
        counts = self.counts
        counts[old] -= 1
        counts[new] += 1

    def flush_hosts(self, now: float | None = None) -> None:
        """Rewrite the rows of hosts that changed (cells are made when drawn)."""
        if not self._dirty_hosts:
            return
        now = time.monotonic() if now is None else now
        upsert = self.host_model.upsert
        for name in self._dirty_hosts:
            upsert(self._host_row(self.hosts[name], now))
        self._dirty_hosts.clear()

    def _host(self, name: str) -> HostInfo:
        info = self.hosts.get(name)
        if info is None:
            info = self.hosts[name] = HostInfo(name)
            self.counts[info.state] += 1
        return info

    def _host_row(self, info: HostInfo, now: float) -> Entry:
        result = info.result
        if result is None:
            note = ""
            if info.retry is not None:  # retry in 40 s, attempt 3, last: unreachable: ...
                info.shown_wait = info.wait_left(now)
                note = humanize_epochs(info.retry.text_in(info.shown_wait))
            raw: tuple[Any, ...] = (info.name, info.state, None, None, note)
        else:
            note = humanize_epochs(replay_mark(result) + reason_text(result.reason, result.detail))
            if result.attempts > 1:
                note = (
                    f"{note} ({result.attempts} attempts)"
                    if note
                    else f"{result.attempts} attempts"
                )
            raw = (
                info.name,
                result.status,
                result.matches,
                fmt.duration_ms(result.elapsed_ms),
                note,
            )
        return (raw, info.name, info)

    # -- summaries -------------------------------------------------------------------------
    @property
    def cancelled(self) -> bool:
        """Cancelled by the investigator (live), or reopened with hosts that ended cancelled."""
        return self.cancelling or bool(self.counts["cancelled"])

    def finish(self) -> None:
        self.finished = True
        if self.ended is None:
            self.ended = when.clock()

    @property
    def done_hosts(self) -> int:
        return sum(1 for info in self.hosts.values() if info.result is not None)

    def failed_by_kind(self) -> dict[str, int]:
        return {kind: self.counts[kind] for kind in FAILED_STATUSES if self.counts[kind]}

    def rejected_reasons(self) -> Counter[str]:
        return +self.rejected  # without the reasons that dropped to zero

    def matches_of(self, host: str) -> list[Entry]:
        return [entry for entry in self.match_model.entries if entry[0][0] == host]


def _from_store(store: Store, run: Any, **options: Any) -> RunState:
    """An empty RunState of a stored run: its action, signers, start and hosts."""
    envelope = json.loads(run["envelope"])
    action = envelope.get("action", {}) if isinstance(envelope, dict) else {}
    signatures = envelope.get("signatures", []) if isinstance(envelope, dict) else []
    targets = json.loads(run["targets"]) if run["targets"] else []
    names = dict.fromkeys([*targets, *(h["host"] for h in store.hosts(run["id"]))])
    return RunState(
        action,
        names,
        signers=signer_ids(signatures if isinstance(signatures, list) else []),
        started=run["started"],
        **options,
    )


def load_run(store: Store, run_id: str) -> RunState:
    """A finished RunState rebuilt from the store (hosts, results, every match row). Hosts without
    a result (a console that died first) are ``pending``, and ``writer_gone`` says so."""
    run: Any = store.run(run_id)
    state = _from_store(store, run, live=False, ended=run["finished"], first_state="pending")
    for result in store.host_results(run["id"]):
        state.set_result(result)
    state.flush_hosts()
    state.add_matches(store.matches(run["id"]))
    state.writer_gone = run["finished"] is None
    return state


def follow_run(store: Store, run_id: str) -> RunState:
    """A live RunState of a run another console is writing, fed from the store (``poll``) as it
    commits: every event stored so far, then the new ones."""
    state = _from_store(store, store.run(run_id), first_state="pending")
    state.follow = Follow(store, run_id)
    return state


def resume_run(store: Store, run_id: str, resent: Iterable[str]) -> RunState:
    """A live RunState of a run being resumed: the stored results of the hosts not ``resent``,
    every stored row (a resent host's rows go when its new answer brings them again)."""
    resent = set(resent)
    state = _from_store(store, store.run(run_id))
    for result in store.host_results(run_id):
        if result.host not in resent:
            state.set_result(result)
    state.add_matches(store.matches(run_id))
    state.stale = {host for host in resent if state._host_rows[host]}
    state.flush_hosts()
    return state
