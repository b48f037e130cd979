"""The results store: SQLite in WAL mode, written as events arrive.

Writes are queued and committed by ``flush`` in one transaction. ``console.fanout.investigation``
flushes at the end of each event-loop turn, *before* handing that turn's events to a front end, so a
console that dies loses nothing it had shown, while a flood of matches costs one commit per batch
rather than one per row.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from console.results.records import HostResult, MatchEvent
from console.results.text import json_line, storable_text
from protocol.errors import ConfigError

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    target TEXT NOT NULL,
    modules TEXT NOT NULL,
    envelope TEXT NOT NULL,
    started REAL NOT NULL,
    finished REAL,
    hosts INTEGER NOT NULL DEFAULT 0,
    matched INTEGER NOT NULL DEFAULT 0,
    nomatch INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS hosts (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    host TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    detail TEXT NOT NULL DEFAULT '',
    matches INTEGER NOT NULL DEFAULT 0,
    elapsed_ms INTEGER NOT NULL DEFAULT 0,
    agent TEXT,
    PRIMARY KEY (run_id, host)
);
CREATE TABLE IF NOT EXISTS matches (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    host TEXT NOT NULL,
    op INTEGER NOT NULL,
    module TEXT NOT NULL,
    data TEXT NOT NULL,
    received REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS matches_run ON matches(run_id, seq);
"""


def default_store_path() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "spyglass" / "results.db"


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as err:
            raise ConfigError(f"results store {self.path}: {err}") from None
        self._pending: list[tuple[str, tuple[Any, ...]]] = []
        self._seq: dict[str, int] = {}

    # -- writing -------------------------------------------------------------------------------
    def begin_run(
        self,
        run_id: str,
        name: str,
        target: str,
        modules: list[str],
        envelope: dict[str, Any],
        hosts: int,
    ) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO runs (id, name, target, modules, envelope, started, hosts)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (run_id, name, target, ",".join(modules), json.dumps(envelope), time.time(), hosts),
        )
        self._seq[run_id] = 0

    def add_match(self, run_id: str, host: str, op: int, module: str, data: dict[str, Any]) -> int:
        """Queue one match row; returns the size of its stored JSON, for the console's caps."""
        seq = self._seq.get(run_id, 0) + 1
        self._seq[run_id] = seq
        text = json_line(data)  # a lone surrogate is stored escaped, loads back identical
        self._pending.append(
            (
                "INSERT INTO matches VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, seq, host, op, module, text, time.time()),
            )
        )
        return len(text)

    def set_host(self, run_id: str, r: HostResult) -> None:
        self._pending.append(
            (
                "INSERT OR REPLACE INTO hosts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    storable_text(r.host),
                    r.status,
                    storable_text(r.reason),
                    storable_text(r.detail),
                    r.matches,
                    r.elapsed_ms,
                    json.dumps(r.agent) if r.agent else None,
                ),
            )
        )

    def finish_run(self, run_id: str, matched: int, nomatch: int, failed: int) -> None:
        self.flush()
        self.db.execute(
            "UPDATE runs SET finished = ?, matched = ?, nomatch = ?, failed = ? WHERE id = ?",
            (time.time(), matched, nomatch, failed, run_id),
        )

    def flush(self) -> None:
        """Commit everything queued, in one transaction."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        try:
            with self.db:
                self.db.execute("BEGIN")
                for sql, args in pending:
                    self.db.execute(sql, args)
        except sqlite3.Error as err:  # disk full, store deleted or locked: say which store
            raise ConfigError(f"results store {self.path}: {err}") from None

    def delete_older_than(self, seconds: float) -> int:
        cutoff = time.time() - seconds
        with self.db:
            self.db.execute("BEGIN")
            return self.db.execute("DELETE FROM runs WHERE started < ?", (cutoff,)).rowcount

    def close(self) -> None:
        self.flush()
        self.db.close()

    # -- reading -------------------------------------------------------------------------------
    def runs(self) -> list[sqlite3.Row]:
        return self._query("SELECT * FROM runs ORDER BY started DESC")

    def run(self, run_id: str) -> sqlite3.Row | None:
        rows = self._query("SELECT * FROM runs WHERE id = ? OR id LIKE ?", (run_id, run_id + "%"))
        return rows[0] if len(rows) == 1 else None

    def hosts(self, run_id: str) -> list[sqlite3.Row]:
        return self._query("SELECT * FROM hosts WHERE run_id = ? ORDER BY host", (run_id,))

    def host_results(self, run_id: str) -> list[HostResult]:
        """The run's hosts as the records the fan-out produced, by host name."""
        return [
            HostResult(
                h["host"],
                h["status"],
                h["reason"],
                h["detail"],
                h["matches"],
                h["elapsed_ms"],
                json.loads(h["agent"]) if h["agent"] else None,
            )
            for h in self.hosts(run_id)
        ]

    def match_events(self, run_id: str) -> Iterator[MatchEvent]:
        """The run's matches as the records the fan-out produced, in arrival order."""
        for m in self.matches(run_id):
            yield MatchEvent(m["host"], m["op"], m["module"], m["data"])

    def matches(self, run_id: str) -> Iterator[dict[str, Any]]:
        cursor = self.db.execute(
            "SELECT host, op, module, data FROM matches WHERE run_id = ? ORDER BY seq", (run_id,)
        )
        for host, op, module, data in cursor:
            yield {"host": host, "op": op, "module": module, "data": json.loads(data)}

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        cursor = self.db.execute(sql, args)
        cursor.row_factory = sqlite3.Row
        return cursor.fetchall()
