"""Launching an envelope: fan-out plus the results store, shared by the CLI, runbooks and TUI."""

from __future__ import annotations

import asyncio

from console.dispatch import Dispatcher, Event, HostEvent, MatchEvent, Sink, Summary
from console.ssh import Pool
from console.store import Store
from inventory.model import Host
from protocol.envelope import Envelope


class Investigation:
    """One launched action: every event is stored as it arrives, then handed to the sink."""

    def __init__(
        self,
        envelope: Envelope,
        hosts: list[Host],
        pool: Pool,
        store: Store,
        concurrency: int = 256,
    ) -> None:
        self.envelope = envelope
        self.hosts = hosts
        self.store = store
        self.dispatcher = Dispatcher(pool, concurrency=concurrency)
        self._flush_scheduled = False

    @property
    def id(self) -> str:
        return self.envelope.action.id

    async def run(self, sink: Sink) -> Summary:
        action = self.envelope.action
        self.store.begin_run(
            action.id,
            action.name,
            action.target,
            action.modules,
            self.envelope.to_dict(),
            len(self.hosts),
        )

        def tee(event: Event) -> None:
            if isinstance(event, MatchEvent):
                self.store.add_match(action.id, event.host, event.op, event.module, event.data)
                self._schedule_flush()
            elif isinstance(event, HostEvent):
                r = event.result
                self.store.set_host(
                    action.id,
                    r.host,
                    r.status,
                    r.reason,
                    r.detail,
                    r.matches,
                    r.elapsed_ms,
                    r.agent,
                )
                self._schedule_flush()
            sink(event)

        try:
            summary = await self.dispatcher.run(self.envelope, self.hosts, tee)
        finally:
            self.store.flush()
        self.store.finish_run(
            action.id, summary.count("matched"), summary.count("nomatch"), summary.failed
        )
        return summary

    def cancel(self) -> None:
        self.dispatcher.cancel()

    def _schedule_flush(self) -> None:
        """Commit at the end of this loop turn: one transaction per burst of events."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        self.store.flush()
