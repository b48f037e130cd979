"""Each launch is its own run in the store, and an answer the agent replayed from its stored
outcome says so (issue 14.1), in every output: `--json`, text, CSV, the store, `results show`."""

from __future__ import annotations

import csv
import io
import sqlite3
import time
from pathlib import Path

from console.lab.local import Lab
from console.results.store import Store
from protocol.action import Operation, make_action
from protocol.envelope import Envelope
from protocol.signing import Signer
from tests.support.cli import events, spyglass
from tests.support.lab import LAB_SIZE, PLANTED, PLANTED_NAME

PLANTED_HOSTS = {f"lab-{i + 1:03d}" for i in PLANTED}


def signed_envelope(lab: Lab, where: Path) -> tuple[Path, str]:
    op = Operation("file", {"paths": ["/srv"], "name": [f"^{PLANTED_NAME}$"]})
    action = make_action("replay check", "all", [op], expire_seconds=300)
    path = where / "envelope.json"
    Signer(lab.gnupghome).sign(Envelope(action)).save(path)
    return path, action.id


def test_a_relaunch_is_its_own_run_with_every_host_marked_replayed(
    lab: Lab, lab_env: dict[str, str], tmp_path: Path
) -> None:
    envelope, action_id = signed_envelope(lab, tmp_path)
    before = time.time()
    first = spyglass(lab_env, "action", "launch", str(envelope), "--json")
    assert first.returncode == 0, first.stderr
    second = spyglass(lab_env, "action", "launch", str(envelope), "--json")
    assert second.returncode == 0, second.stderr
    run1, run2 = events(first.stdout), events(second.stdout)

    hosts1 = {e["host"]: e for e in run1 if e["event"] == "host"}
    hosts2 = {e["host"]: e for e in run2 if e["event"] == "host"}
    assert len(hosts2) == len(hosts1) == LAB_SIZE
    assert not any(e["replay"] for e in hosts1.values())
    assert all(e["replay"] for e in hosts2.values()), hosts2
    for e in hosts2.values():  # the original run's time, not the relaunch's
        assert e["ran_at"] is not None and before - 1 <= e["ran_at"] <= time.time()
        assert e["status"] == hosts1[e["host"]]["status"]
    assert {e["host"] for e in run2 if e["event"] == "match"} == PLANTED_HOSTS
    assert run1[-1]["run_id"] == action_id
    assert run2[-1]["run_id"] == f"{action_id}.2"

    # Two runs in the store, both of the action; the first is untouched by the second.
    store = Store(lab_env["SPYGLASS_STORE"])
    try:
        runs = {r["id"]: r for r in store.runs()}
        assert set(runs) == {action_id, f"{action_id}.2"}
        assert {r["action_id"] for r in runs.values()} == {action_id}
        assert runs[action_id]["started"] < runs[f"{action_id}.2"]["started"]
        assert not any(h.replay for h in store.host_results(action_id))
        assert all(h.replay and h.ran_at for h in store.host_results(f"{action_id}.2"))
        assert len(list(store.matches(action_id))) == len(PLANTED_HOSTS)
        assert len(list(store.matches(f"{action_id}.2"))) == len(PLANTED_HOSTS)
    finally:
        store.close()

    shown = spyglass(lab_env, "results", "show", f"{action_id}.2", "--json")
    assert shown.returncode == 0, shown.stderr
    assert all(e["replay"] for e in events(shown.stdout) if e["event"] == "host")
    shown_first = spyglass(lab_env, "results", "show", action_id, "--json")
    assert not any(e["replay"] for e in events(shown_first.stdout) if e["event"] == "host")

    text = spyglass(lab_env, "results", "show", f"{action_id}.2")
    host_lines = text.stdout.split("host\tstatus")[1].splitlines()[1:]
    assert len(host_lines) == LAB_SIZE
    assert all("replayed (ran " in line for line in host_lines), host_lines

    exported = spyglass(lab_env, "results", "show", f"{action_id}.2", "--csv")
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert {r["host"] for r in rows} == PLANTED_HOSTS
    assert all(r["replay"] == "true" and int(r["ran_at"]) >= before - 1 for r in rows)

    listed = spyglass(lab_env, "results", "list")
    assert f"{action_id}\t" in listed.stdout and f"{action_id}.2\t" in listed.stdout


def test_text_output_marks_replayed_hosts(
    lab: Lab, lab_env: dict[str, str], tmp_path: Path
) -> None:
    envelope, action_id = signed_envelope(lab, tmp_path)
    assert spyglass(lab_env, "action", "launch", str(envelope)).returncode == 0
    again = spyglass(lab_env, "action", "launch", str(envelope), "--show", "all")
    assert again.returncode == 0, again.stderr
    host_lines = again.stdout.split("host\tstatus")[1].splitlines()[1:]
    assert len(host_lines) == LAB_SIZE
    assert all("replayed (ran " in line for line in host_lines)
    assert f"{LAB_SIZE} replayed from an earlier run" in again.stderr
    assert f"run {action_id}.2" in again.stderr


OLD_SCHEMA = """
CREATE TABLE runs (id TEXT PRIMARY KEY, name TEXT NOT NULL, target TEXT NOT NULL,
    modules TEXT NOT NULL, envelope TEXT NOT NULL, started REAL NOT NULL, finished REAL,
    hosts INTEGER NOT NULL DEFAULT 0, matched INTEGER NOT NULL DEFAULT 0,
    nomatch INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0);
CREATE TABLE hosts (run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    host TEXT NOT NULL, status TEXT NOT NULL, reason TEXT, detail TEXT NOT NULL DEFAULT '',
    matches INTEGER NOT NULL DEFAULT 0, elapsed_ms INTEGER NOT NULL DEFAULT 0, agent TEXT,
    PRIMARY KEY (run_id, host));
INSERT INTO runs VALUES ('01OLD', 'old', 'all', 'file', '{}', 1.0, 2.0, 1, 1, 0, 0);
INSERT INTO hosts VALUES ('01OLD', 'h1', 'matched', NULL, '', 1, 5, NULL);
"""


def test_a_store_of_the_one_run_per_action_schema_opens_and_relaunches(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
    store = Store(path)
    try:
        run = store.run("01OLD")
        assert run is not None and run["action_id"] == "01OLD"
        (host,) = store.host_results("01OLD")
        assert (host.status, host.replay, host.ran_at, host.attempts) == ("matched", False, None, 1)
        assert store.begin_run("01OLD", "old", "all", ["file"], {}, 1) == "01OLD.2"
    finally:
        store.close()
