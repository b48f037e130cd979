"""Launching an envelope: fan-out plus the results store, shared by the CLI, runbooks and TUI.

Stored before shown: the events of one loop turn are queued, and the callback scheduled at the
end of that turn commits them in one transaction, then hands them to the sink in their order.
Whatever a front end has printed is therefore already committed, so a console killed at any
moment loses nothing it showed; a burst of matches still costs one commit.

The console does not trust agent volume either: a lying agent could send matches without end.
Past a per-host or per-run cap (rows or bytes) its further matches are neither stored nor shown;
the host keeps the status and match count its agent reported, and its detail says the console
cap was reached.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass

from console.fanout.dispatch import FanOut
from console.fanout.gcpolicy import young_collections_only
from console.results import records
from console.results.store import Store
from console.results.writer import HEARTBEAT
from inventory.model import Host
from protocol.envelope import Envelope
from protocol.errors import ConfigError

CAP_NOTE = "console match cap reached"
"""Appended to a host's detail when some of its matches were dropped by a `MatchCaps` limit."""


@dataclass(frozen=True, slots=True)
class MatchCaps:
    """How much of what agents send the console keeps, whatever they claim.

    Agents cap themselves (``limits.match_limit``, ``limits.result_bytes``); these bound what a
    compromised agent that ignores its own limits can make the console store and hold.
    """

    host_rows: int = 100_000
    """Matches kept per host (ten times the agent's default ``match_limit``)."""
    host_bytes: int = 64 << 20
    """JSON bytes of match rows kept per host (four times the agent's ``result_bytes``)."""
    run_rows: int = 2_000_000
    """Matches kept per run, all hosts together."""
    run_bytes: int = 1 << 30
    """JSON bytes of match rows kept per run."""

    ENV = {
        "host_rows": "SPYGLASS_HOST_MATCH_CAP",
        "host_bytes": "SPYGLASS_HOST_MATCH_BYTES",
        "run_rows": "SPYGLASS_RUN_MATCH_CAP",
        "run_bytes": "SPYGLASS_RUN_MATCH_BYTES",
    }

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> MatchCaps:
        """The defaults, each overridable by its environment variable (a positive integer)."""
        values: dict[str, int] = {}
        for field_name, var in cls.ENV.items():
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            try:
                values[field_name] = int(raw)
            except ValueError:
                values[field_name] = 0
            if values[field_name] <= 0:
                raise ConfigError(f"{var}={raw!r}: expected a positive integer")
        return cls(**values)


class _Volume:
    """Rows and bytes kept so far, for one host or the whole run."""

    __slots__ = ("bytes", "rows")

    def __init__(self) -> None:
        self.rows = 0
        self.bytes = 0


class Investigation:
    """One launched action: every event is stored, then handed to the sink.

    Each launch is a new run in the store; with ``resume`` (a stored run's id) the run is
    continued instead: ``hosts`` are the ones sent the action again, the others keep their
    stored results. A host tried again (resumed, or retried after a lost connection) keeps its
    earlier rows until the new attempt answers, which brings all of them again.
    """

    def __init__(
        self,
        envelope: Envelope,
        hosts: list[Host],
        dispatcher: FanOut,
        store: Store,
        caps: MatchCaps | None = None,
        *,
        resume: str | None = None,
    ) -> None:
        self.envelope = envelope
        self.hosts = hosts
        self.store = store
        self.caps = caps if caps is not None else MatchCaps.from_env()
        self.dispatcher = dispatcher
        self.run_id = resume or ""
        self._resume = resume
        self._flush_scheduled = False
        self._queue: list[records.Event] = []
        self._sink: records.Sink = lambda event: None
        self._error: BaseException | None = None
        self._run_volume = _Volume()
        self._host_volume: dict[str, _Volume] = {}
        self._capped: dict[str, str] = {}  # host -> which cap dropped some of its matches
        self._stale: set[str] = set()  # hosts whose stored rows a new answer replaces

    @property
    def id(self) -> str:
        return self.envelope.action.id

    async def run(self, sink: records.Sink) -> records.Summary:
        action = self.envelope.action
        self._sink = sink
        kept: list[records.HostResult] = []
        if self._resume is None:
            self.run_id = self.store.begin_run(
                action.id,
                action.name,
                action.target,
                action.modules,
                self.envelope.to_dict(),
                len(self.hosts),
                [h.name for h in self.hosts],
            )
        else:
            self.store.reopen_run(self._resume)
            self._stale = {h.name for h in self.hosts}
            kept = [r for r in self.store.host_results(self._resume) if r.host not in self._stale]

        beating = asyncio.create_task(self._beat())
        try:
            with young_collections_only():
                summary = await self.dispatcher.run(self.envelope, self.hosts, self._tee)
        finally:
            beating.cancel()
            self._flush()
        if self._error is not None:
            raise self._error
        summary.run_id = self.run_id
        for r in kept:
            summary.results.setdefault(r.host, r)
        self.store.finish_run(
            self.run_id,
            summary.count("matched"),
            summary.count("nomatch"),
            summary.failed,
            summary.elapsed_ms,
        )
        return summary

    async def _beat(self) -> None:
        """The run's heartbeat while it is open: a follower on another machine learns that this
        console still lives (console/results/writer.py)."""
        while True:
            await asyncio.sleep(HEARTBEAT)
            self.store.beat(self.run_id)

    def _tee(self, event: records.Event) -> None:
        """Queue an event for the store (then the sink) at the end of this loop turn."""
        if self._stale:
            self._renew(event)
        if isinstance(event, records.MatchEvent):
            if not self._admit(event):
                return
        elif isinstance(event, records.HostEvent):
            r = event.result
            if r.host in self._capped:
                note = f"{CAP_NOTE} ({self._capped[r.host]})"
                r.detail = f"{r.detail}; {note}" if r.detail else note
            if r.replay and r.ran_at is None:  # an agent that does not say when it ran it
                r.ran_at = self.store.replayed_from(self.id, r.host)
            self.store.set_host(self.run_id, r)
        elif isinstance(event, records.RetryEvent):
            self.store.add_attempt(self.run_id, event)
            if event.host in self._host_volume:  # rows came before the connection was lost
                self._stale.add(event.host)
        self._queue.append(event)
        self._schedule_flush()

    def _renew(self, event: records.Event) -> None:
        """A new attempt answers for a host that has rows from an earlier one: drop those."""
        if isinstance(event, records.MatchEvent):
            host = event.host
        elif isinstance(event, records.HostEvent) and event.result.status in records.ANSWERED:
            host = event.result.host
        else:
            return
        if host in self._stale:
            self._stale.discard(host)
            self.store.drop_matches(self.run_id, host)
            dropped = self._host_volume.pop(host, None)
            if dropped is not None:
                self._run_volume.rows -= dropped.rows
                self._run_volume.bytes -= dropped.bytes
            self._capped.pop(host, None)

    def cancel(self) -> None:
        self.dispatcher.cancel()

    def _admit(self, event: records.MatchEvent) -> bool:
        """Queue a match for the store unless its host or the run is over a cap."""
        host = self._host_volume.setdefault(event.host, _Volume())
        run, caps = self._run_volume, self.caps
        if host.rows >= caps.host_rows:
            self._capped.setdefault(event.host, f"{caps.host_rows} rows per host")
        elif host.bytes >= caps.host_bytes:
            self._capped.setdefault(event.host, f"{caps.host_bytes} bytes per host")
        elif run.rows >= caps.run_rows:
            self._capped.setdefault(event.host, f"{caps.run_rows} rows per run")
        elif run.bytes >= caps.run_bytes:
            self._capped.setdefault(event.host, f"{caps.run_bytes} bytes per run")
        else:
            size = self.store.add_match(self.run_id, event.host, event.op, event.module, event.data)
            host.rows += 1
            run.rows += 1
            host.bytes += size
            run.bytes += size
            return True
        return False

    def _schedule_flush(self) -> None:
        """Commit and show at the end of this loop turn: one transaction per burst of events."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Commit what is queued, then show it; an error stops the run and `run` raises it."""
        self._flush_scheduled = False
        if self._error is not None:
            self._queue.clear()
            return
        queue, self._queue = self._queue, []
        try:
            self.store.flush()
            for event in queue:
                self._sink(event)
        except Exception as err:  # from the store (disk full) or the front end: end the run
            self._error = err
            self.dispatcher.cancel()
