"""The results store: SQLite in WAL mode, written as events arrive.

Writes are queued and committed by ``flush`` in one transaction. ``console.fanout.investigation``
flushes at the end of each event-loop turn, *before* handing that turn's events to a front end, so a
console that dies loses nothing it had shown, while a flood of matches costs one commit per batch
rather than one per row.

Each launch is its own run: the first launch of an action in a store has the action's id as its
run id, a later one ``ID.2``, ``ID.3``... Every stored event of a run (match, failed attempt, host
result) takes the next number of one per-run sequence, so ``events`` gives them back in the order
they were shown, for ``results follow`` in another process.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from console.results.records import (
    ANSWERED,
    Event,
    HostEvent,
    HostResult,
    MatchEvent,
    RetryEvent,
)
from console.results.text import json_line, storable_text
from console.results.writer import Writer
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
CREATE TABLE IF NOT EXISTS attempts (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    host TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    detail TEXT NOT NULL DEFAULT '',
    retry_in_ms INTEGER NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_run ON attempts(run_id, seq);
"""
#: Columns added since the first schema, (table, column, declaration): added to older stores.
ADDED_COLUMNS = (
    ("runs", "action_id", "TEXT"),
    ("runs", "targets", "TEXT"),  # JSON list of the host names the run was launched on
    ("runs", "elapsed_ms", "INTEGER NOT NULL DEFAULT 0"),
    ("hosts", "replay", "INTEGER NOT NULL DEFAULT 0"),
    ("hosts", "ran_at", "INTEGER"),
    ("hosts", "attempts", "INTEGER NOT NULL DEFAULT 1"),
    ("hosts", "seq", "INTEGER NOT NULL DEFAULT 0"),
    # The console writing the run (console/results/writer.py), for `results follow`.
    ("runs", "writer_pid", "INTEGER"),
    ("runs", "writer_host", "TEXT"),
    ("runs", "writer_identity", "TEXT"),
    ("runs", "heartbeat", "REAL"),
)


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
            self._add_columns()
        except (OSError, sqlite3.Error) as err:
            raise ConfigError(f"results store {self.path}: {err}") from None
        self._pending: list[tuple[str, tuple[Any, ...]]] = []
        self._seq: dict[str, int] = {}

    # -- writing -------------------------------------------------------------------------------
    def _add_columns(self) -> None:
        for table, column, declaration in ADDED_COLUMNS:
            have = {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
                if column == "action_id":  # runs of older stores: one run per action
                    self.db.execute("UPDATE runs SET action_id = id")

    def begin_run(
        self,
        action_id: str,
        name: str,
        target: str,
        modules: list[str],
        envelope: dict[str, Any],
        hosts: int,
        targets: list[str] | None = None,
    ) -> str:
        """Record a new launch of the action; returns its run id (``action_id``, else the next
        free ``action_id.N``). ``targets`` are the names of its hosts, for ``results resume``."""
        w = Writer.this_process()
        for n in itertools.count(1):
            run_id = action_id if n == 1 else f"{action_id}.{n}"
            try:
                self.db.execute(
                    "INSERT INTO runs (id, action_id, name, target, modules, envelope, started,"
                    " hosts, targets, writer_pid, writer_host, writer_identity, heartbeat)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        run_id,
                        action_id,
                        name,
                        target,
                        ",".join(modules),
                        json.dumps(envelope),
                        time.time(),
                        hosts,
                        json.dumps(targets) if targets is not None else None,
                        w.pid,
                        w.host,
                        w.identity,
                        w.heartbeat,
                    ),
                )
            except sqlite3.IntegrityError:
                continue
            self._seq[run_id] = 0
            return run_id
        raise AssertionError("unreachable")

    def reopen_run(self, run_id: str) -> None:
        """Continue a stored run (``results resume``): unfinished again, its sequence resumed."""
        w = Writer.this_process()
        self.db.execute(
            "UPDATE runs SET finished = NULL, writer_pid = ?, writer_host = ?,"
            " writer_identity = ?, heartbeat = ? WHERE id = ?",
            (w.pid, w.host, w.identity, w.heartbeat, run_id),
        )
        self._seq[run_id] = max(
            self.db.execute(
                f"SELECT COALESCE(MAX(seq), 0) FROM {table} WHERE run_id = ?", (run_id,)
            ).fetchone()[0]
            for table in ("matches", "attempts", "hosts")
        )

    def beat(self, run_id: str) -> None:
        """The writer's heartbeat (every ``writer.HEARTBEAT`` seconds while the run is open)."""
        with contextlib.suppress(sqlite3.Error):  # a missed beat is no failure: the next flush
            self.db.execute("UPDATE runs SET heartbeat = ? WHERE id = ?", (time.time(), run_id))

    def add_match(self, run_id: str, host: str, op: int, module: str, data: dict[str, Any]) -> int:
        """Queue one match row; returns the size of its stored JSON, for the console's caps."""
        seq = self._next(run_id)
        text = json_line(data)  # a lone surrogate is stored escaped, loads back identical
        self._pending.append(
            (
                "INSERT INTO matches VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, seq, host, op, module, text, time.time()),
            )
        )
        return len(text)

    def _next(self, run_id: str) -> int:
        seq = self._seq.get(run_id, 0) + 1
        self._seq[run_id] = seq
        return seq

    def set_host(self, run_id: str, r: HostResult) -> None:
        self._pending.append(
            (
                "INSERT OR REPLACE INTO hosts (run_id, host, status, reason, detail, matches,"
                " elapsed_ms, agent, replay, ran_at, attempts, seq)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    storable_text(r.host),
                    r.status,
                    storable_text(r.reason),
                    storable_text(r.detail),
                    r.matches,
                    r.elapsed_ms,
                    json.dumps(r.agent) if r.agent else None,
                    int(r.replay),
                    r.ran_at,
                    r.attempts,
                    self._next(run_id),
                ),
            )
        )

    def add_attempt(self, run_id: str, e: RetryEvent) -> None:
        """Queue a failed attempt that will be retried."""
        self._pending.append(
            (
                "INSERT INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    self._next(run_id),
                    storable_text(e.host),
                    e.attempt,
                    e.status,
                    storable_text(e.reason),
                    storable_text(e.detail),
                    e.retry_in_ms,
                    time.time(),
                ),
            )
        )

    def drop_matches(self, run_id: str, host: str) -> None:
        """Queue the removal of a host's rows: a new attempt's answer brings all of them again."""
        self._pending.append(
            ("DELETE FROM matches WHERE run_id = ? AND host = ?", (run_id, storable_text(host)))
        )

    def replayed_from(self, action_id: str, host: str) -> int | None:
        """When this store saw ``host`` answer the action itself (not replayed), if it did."""
        row = self.db.execute(
            "SELECT MIN(r.started) FROM runs r JOIN hosts h ON h.run_id = r.id WHERE"
            " r.action_id = ? AND h.host = ? AND h.replay = 0 AND h.status IN (?, ?)",
            (action_id, host, *ANSWERED),
        ).fetchone()
        return None if row[0] is None else int(row[0])

    def finish_run(
        self, run_id: str, matched: int, nomatch: int, failed: int, elapsed_ms: int = 0
    ) -> None:
        self.flush()
        self.db.execute(
            "UPDATE runs SET finished = ?, matched = ?, nomatch = ?, failed = ?, elapsed_ms = ?"
            " WHERE id = ?",
            (time.time(), matched, nomatch, failed, elapsed_ms, run_id),
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
        """The run of that id, else the one run whose id starts with it."""
        rows = self._query("SELECT * FROM runs WHERE id = ?", (run_id,))
        if not rows:
            rows = self._query(
                "SELECT * FROM runs WHERE id LIKE ? ESCAPE '\\'", (_like_prefix(run_id),)
            )
        return rows[0] if len(rows) == 1 else None

    def hosts(self, run_id: str) -> list[sqlite3.Row]:
        return self._query("SELECT * FROM hosts WHERE run_id = ? ORDER BY host", (run_id,))

    def host_results(self, run_id: str) -> list[HostResult]:
        """The run's hosts as the records the fan-out produced, by host name."""
        return [_host_result(h) for h in self.hosts(run_id)]

    def unanswered(self, run_id: str) -> list[str]:
        """The run's hosts that have no result stored (its console stopped before they did)."""
        run = self.run(run_id)
        if run is None or run["targets"] is None:
            return []
        done = {h["host"] for h in self.hosts(run_id)}
        return [name for name in json.loads(run["targets"]) if name not in done]

    def events(self, run_id: str, after: int = 0) -> list[tuple[int, Event]]:
        """The run's stored events after sequence number ``after``, in the order they were
        shown, each with its number: matches, failed attempts (``RetryEvent``) and host results,
        the records ``run`` printed (``results follow``).

        The three tables are read in one transaction: from separate snapshots, a batch the
        writer commits between two reads could show its host results without its matches, and a
        follower would then skip those matches for good."""
        out: list[tuple[int, Event]] = []
        with self.db:
            self.db.execute("BEGIN")
            for seq, host, op, module, data in self.db.execute(
                "SELECT seq, host, op, module, data FROM matches WHERE run_id = ? AND seq > ?",
                (run_id, after),
            ):
                out.append((seq, MatchEvent(host, op, module, json.loads(data))))
            attempts = self._query(
                "SELECT * FROM attempts WHERE run_id = ? AND seq > ?", (run_id, after)
            )
            hosts = self._query("SELECT * FROM hosts WHERE run_id = ? AND seq > ?", (run_id, after))
        for a in attempts:
            retry = RetryEvent(
                a["host"], a["attempt"], a["status"], a["reason"], a["detail"], a["retry_in_ms"]
            )
            out.append((a["seq"], retry))
        for h in hosts:
            out.append((h["seq"], HostEvent(_host_result(h))))
        out.sort(key=lambda pair: pair[0])
        return out

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


def _like_prefix(text: str) -> str:
    r"""A LIKE pattern for ids starting with ``text`` (``%`` and ``_`` taken literally)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _host_result(h: sqlite3.Row) -> HostResult:
    return HostResult(
        h["host"],
        h["status"],
        h["reason"],
        h["detail"],
        h["matches"],
        h["elapsed_ms"],
        json.loads(h["agent"]) if h["agent"] else None,
        bool(h["replay"]),
        h["ran_at"],
        h["attempts"],
    )
