"""Hostile data from endpoints: names an attacker chose on a compromised host (terminal escapes,
Rich markup, spreadsheet formulas, bidi overrides, invalid UTF-8, paths past PATH_MAX, 100 KB
values) reach the text output, `--json`, the store and `results show` (text, JSON, CSV) without
altering the display, breaking the format or crashing anything.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from console.lab.local import Lab
from console.results import history
from console.results.output import JsonLines, TextOutput
from console.results.records import HostEvent, HostResult, MatchEvent, Summary
from console.results.store import Store
from console.results.text import is_formula, printable
from tests.support.agents import start_agent, stop_agent
from tests.support.cli import SPYGLASS
from tests.support.faults import VICTIM, victim_dir, victim_env
from tests.support.paths import short_tmp

EVIL_NAMES = [
    "\x1b]0;pwned\x07",  # sets the terminal title
    "\x1b[2J",  # clears the screen
    "[bold red]x",  # Rich markup
    '=HYPERLINK("http:evil")',
    "+1+2",
    "-1",
    "@SUM(A1)",
    "line\nbreak\rcr",
    "evil\u202egpj.exe",  # shows as "evilexe.jpg"
]
BAD_BYTES = b"bad\xff\xfename"  # not UTF-8
DEEP_PART = "d" * 250
DEEP_LEVELS = 20  # about 5 KB of path: past PATH_MAX, where opening by full path would fail
DEEP_FILE = "/srv/evil/" + "/".join([DEEP_PART] * DEEP_LEVELS) + "/deep-file"


def plant(srv: Path) -> set[str]:
    """Create the hostile tree; returns the paths the file module should report."""
    evil = srv / "evil"
    evil.mkdir()
    for name in EVIL_NAMES:
        (evil / name).write_text("x")
    os.close(os.open(os.fsencode(evil) + b"/" + BAD_BYTES, os.O_CREAT | os.O_WRONLY, 0o644))
    (evil / "[red]x[").mkdir()  # broken markup across the path: /srv/evil/[red]x[/y]
    (evil / "[red]x[" / "y]").write_text("x")
    fd = os.open(evil, os.O_RDONLY)
    for _ in range(DEEP_LEVELS):  # build it relative to descriptors: the path is too long
        os.mkdir(DEEP_PART, dir_fd=fd)
        child = os.open(DEEP_PART, os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(os.open("deep-file", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
    os.close(fd)
    named = {f"/srv/evil/{n}" for n in EVIL_NAMES} | {"/srv/evil/[red]x[/y]", DEEP_FILE}
    return named | {"/srv/evil/" + os.fsdecode(BAD_BYTES)}


@dataclass
class Runs:
    env: dict[str, str]
    expected: set[str]
    text: subprocess.CompletedProcess[bytes]
    json: subprocess.CompletedProcess[bytes]
    run_id: str


def spyglass_bytes(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*SPYGLASS, *args], env=env, capture_output=True, timeout=100)


@pytest.fixture(scope="module")
def runs(lab: Lab) -> Iterator[Runs]:
    directory = victim_dir(lab)
    expected = plant(directory / "root" / "srv")
    agent = start_agent(directory)
    where = short_tmp("hd")
    try:
        env = victim_env(lab, agent, where)
        args = ("run", "file", "--paths", "/srv/evil", "--name", ".", "-t", f"name={VICTIM}")
        text = spyglass_bytes(env, *args)
        as_json = spyglass_bytes(env, *args, "--json")
        summary = json.loads(as_json.stdout.decode().splitlines()[-1])
        yield Runs(env, expected, text, as_json, summary["action_id"])
    finally:
        stop_agent(agent)


def assert_inert_text(raw: bytes) -> str:
    """Valid UTF-8 with no control character but tab and newline, no bidi or line separator."""
    text = raw.decode("utf-8")  # strict: no raw 0xff from a non-UTF-8 name
    bad = {c for c in text if (ord(c) < 0x20 and c not in "\t\n") or 0x7F <= ord(c) < 0xA0}
    bad |= {c for c in text if c in "\u202e\u202d\u2066\u2067\u2068\u2069\u2028\u2029"}
    assert not bad, sorted(bad)
    return text


def assert_names_shown_escaped(text: str) -> None:
    for shown in (r"\x1b]0;pwned\x07", r"\x1b[2J", "[red]x[/y]", "[bold red]x", r"line\nbreak\rcr"):
        assert shown in text, shown
    assert r"bad\xff\xfename" in text
    assert r"evil\u202egpj.exe" in text


def test_text_output_escapes_hostile_names(runs: Runs) -> None:
    assert runs.text.returncode == 0, runs.text.stderr
    text = assert_inert_text(runs.text.stdout)
    assert_names_shown_escaped(text)


def test_json_lines_stay_valid_and_keep_every_name_exactly(runs: Runs) -> None:
    assert runs.json.returncode == 0, runs.json.stderr
    lines = runs.json.stdout.decode("utf-8").splitlines()  # strict UTF-8
    out = [json.loads(line) for line in lines]
    paths = {e["data"]["path"] for e in out if e["event"] == "match"}
    assert paths == runs.expected  # the non-UTF-8 name round-trips: os.fsencode gives its bytes
    assert os.fsencode("/srv/evil/" + os.fsdecode(BAD_BYTES)) in {os.fsencode(p) for p in paths}
    host = next(e for e in out if e["event"] == "host")
    # The file past PATH_MAX was found (the walker opens one component at a time), no error.
    assert DEEP_FILE in paths
    assert (host["status"], host["detail"]) == ("matched", ""), host["detail"][:200]


def test_store_holds_every_hostile_row(runs: Runs) -> None:
    store = Store(runs.env["SPYGLASS_STORE"])
    try:
        rows = list(store.matches(runs.run_id))
        hosts = store.hosts(runs.run_id)
    finally:
        store.close()
    assert {r["data"]["path"] for r in rows} == runs.expected
    assert [h["status"] for h in hosts] == ["matched"]


def test_results_show_text_escapes_hostile_names(runs: Runs) -> None:
    shown = spyglass_bytes(runs.env, "results", "show", runs.run_id)
    assert shown.returncode == 0, shown.stderr
    assert_names_shown_escaped(assert_inert_text(shown.stdout))


def test_results_show_json_is_valid_utf8_json(runs: Runs) -> None:
    shown = spyglass_bytes(runs.env, "results", "show", runs.run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    out = [json.loads(line) for line in shown.stdout.decode("utf-8").splitlines()]
    assert {e["data"]["path"] for e in out if e["event"] == "match"} == runs.expected


def _csv_rows(raw: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(raw.decode("utf-8", "surrogateescape"), newline="")))


def test_results_show_csv_is_valid_and_neutralises_formulas(runs: Runs) -> None:
    shown = spyglass_bytes(runs.env, "results", "show", runs.run_id, "--csv")
    assert shown.returncode == 0, shown.stderr
    rows = _csv_rows(shown.stdout)
    header, body = rows[0], rows[1:]
    assert len(body) == len(runs.expected)  # embedded newlines and quotes did not split rows
    path = header.index("path")
    cells = {row[path] for row in body}
    for formula in ('=HYPERLINK("http:evil")', "+1+2", "-1", "@SUM(A1)"):
        assert f"'/srv/evil/{formula}" not in cells  # paths start with "/": harmless already
        assert f"/srv/evil/{formula}" in cells
    assert not any(is_formula(cell) for row in body for cell in row)


def test_results_show_csv_is_valid_utf8(runs: Runs) -> None:
    shown = spyglass_bytes(runs.env, "results", "show", runs.run_id, "--csv")
    text = shown.stdout.decode("utf-8")  # strict: the non-UTF-8 name's bytes are escaped
    assert r"/srv/evil/bad\xff\xfename" in text


def test_results_diff_text_escapes_hostile_names(runs: Runs) -> None:
    """`results diff` of an empty run against this one lists every hostile row, inert."""
    store = Store(runs.env["SPYGLASS_STORE"])
    try:
        store.begin_run("01EMPTYRUN000000", "empty", "all", ["file"], {}, 0)
        store.finish_run("01EMPTYRUN000000", 0, 0, 0)
    finally:
        store.close()
    diff = spyglass_bytes(runs.env, "results", "diff", "01EMPTYRUN000000", runs.run_id)
    assert diff.returncode == 1, diff.stderr  # the runs differ
    text = assert_inert_text(diff.stdout)
    added = [line.split("\t", 2)[2] for line in text.splitlines() if line.startswith("+\t")]
    assert len(added) == len(runs.expected)  # embedded newlines did not split rows
    # Rows print as JSON (its escapes keep them inert); the non-UTF-8 name's bytes as \xff.
    bad = [row for row in added if r"bad\xff\xfename" in row]
    paths = {json.loads(row)["path"] for row in added if row not in bad}  # JSON: 5 KB path ok
    assert len(bad) == 1 and paths == {p for p in runs.expected if "bad" not in p}
    assert f"host\t{VICTIM}\t- -> matched" in text.splitlines()


# -- 100 KB values and formula cells through every console sink, in process -------------------
HUGE = "\x1b[2J" + "[bold]" + "A" * 100_000 + "\udcff\x07"


def _match(data: dict[str, Any]) -> MatchEvent:
    row = {"path": None, "size": 1, "mode": "-rw-r--r--", "mtime": 0, "sha256": None}
    return MatchEvent("h1", 0, "file", {**row, "matched": ["name"], **data})


def test_100kb_values_through_text_json_and_store(tmp_path: Path) -> None:
    event = _match({"path": "/" + HUGE, "mode": HUGE, "matched": [HUGE, "=cmd"]})
    result = HostResult("h1", "error", detail=HUGE, matches=1)

    out, err = io.StringIO(), io.StringIO()
    text = TextOutput("all", out, err)
    text(event)
    text(HostEvent(result))
    summary = Summary("01TESTRUN0000000", {"h1": result})
    text.summary(summary)
    shown = out.getvalue()
    assert_inert_text(shown.encode("utf-8"))
    assert "A" * 100_000 in shown and r"\x1b[2J[bold]" in shown and r"\xff\x07" in shown
    assert printable(HUGE).count("\n") == 0

    lines = io.StringIO()
    sink = JsonLines(lines)
    sink(event)
    sink(HostEvent(result))
    decoded = [json.loads(line) for line in lines.getvalue().encode("utf-8").splitlines()]
    assert decoded[0]["data"]["path"] == "/" + HUGE and decoded[1]["detail"] == HUGE

    store = Store(tmp_path / "r.db")
    store.begin_run("01TESTRUN0000000", "n", "all", ["file"], {}, 1)
    store.add_match("01TESTRUN0000000", "h1", 0, "file", event.data)
    store.add_match("01TESTRUN0000000", "h1", 0, "file", _match({"path": "/fine"}).data)
    store.set_host("01TESTRUN0000000", HostResult("h1", "error", None, HUGE, 2, 1, None))
    store.finish_run("01TESTRUN0000000", 0, 0, 1)
    assert [m["data"]["path"] for m in store.matches("01TESTRUN0000000")] == ["/" + HUGE, "/fine"]
    assert "A" * 100_000 in store.hosts("01TESTRUN0000000")[0]["detail"]
    store.close()


# -- CSV cells a lying agent chose, in process ----------------------------------------------------
FORMULAS = ["=1+1", "+1+1", "-1+1", "@SUM(A1)", "\t=1+1", "\r=1+1", "\tplain", "\rplain"]


def test_csv_neutralises_every_owasp_formula_start_and_stays_utf8(tmp_path: Path) -> None:
    """OWASP: =, +, -, @, tab and CR start a formula; every such cell gets a leading quote
    (tests/test_cli_csv.py: which + and - cells are data, kept as they are)."""
    run_id = "01CSVRUN00000000"
    store = Store(tmp_path / "r.db")
    try:
        store.begin_run(run_id, "csv", "all", ["file"], {}, 1)
        for cell in FORMULAS:  # a lying agent controls every column, not only the path
            row = {"path": cell, "mode": cell, "matched": [cell], "size": 1, "mtime": 0}
            store.add_match(run_id, "h1", 0, "file", row)
        store.add_match(run_id, "h1", 0, "file", {"path": "/bad\udcff", "mode": "\udcfe"})
        store.finish_run(run_id, 1, 0, 0)
        out = io.StringIO()
        assert history.write_csv(store, run_id, ["file"], out) == len(FORMULAS) + 1
    finally:
        store.close()
    raw = out.getvalue().encode("utf-8")  # strict: no lone surrogate reached the output
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))
    header, body = rows[0], rows[1:]
    for column in ("path", "mode", "matched"):
        cells = [row[header.index(column)] for row in body]
        assert cells[:-1] == ["'" + cell for cell in FORMULAS], column
    assert body[-1][header.index("path")] == r"/bad\xff"
    assert body[-1][header.index("mode")] == r"\xfe"
    assert not any(is_formula(cell) for row in body for cell in row)


def test_cells_follow_column_kinds() -> None:
    from console.results.text import cell

    assert cell(0, "time") == "1970-01-01 00:00:00"
    assert (
        cell([{"rule": "x\x1b[2J", "tags": []}], "json") == '[{"rule": "x\\u001b[2J", "tags": []}]'
    )
    assert cell(["a", "b"], "list") == "a,b"
    assert cell(True, "bool") == "yes" and cell(None, "path") == ""
