"""`spyglass runbook run FILE --compare-last` on the lab: "same" and "changed" exit statuses when a
file is planted between two runs, and the difference written into the report."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from console.cli.runbook import EXIT_CHANGED
from console.lab.local import Lab
from tests.support.cli import spyglass

RUNBOOK = """
name = "late indicator"
target = "all"
expire = "5m"

[[steps]]
name = "find it"
module = "file"
params = { paths = ["/srv"], name = ['^late-ioc\\.bin$'] }
"""


def test_compare_last_says_same_or_changed(
    lab: Lab, lab_env: dict[str, str], tmp_path: Path
) -> None:
    book = tmp_path / "late.toml"
    book.write_text(RUNBOOK)
    report = tmp_path / "report.md"

    def sweep(*extra: str) -> tuple[int, str, str]:
        done = spyglass(lab_env, "runbook", "run", str(book), "--compare-last", *extra)
        return done.returncode, done.stdout, done.stderr

    status, _, err = sweep()
    assert status == 1 and "nothing to compare" in err  # first run: nothing found, no history
    status, _, err = sweep()
    assert status == 1 and "same as the last run" in err

    drop = lab.root("lab-003") / "srv" / "late"
    drop.mkdir()
    try:
        (drop / "late-ioc.bin").write_bytes(b"planted between two runs\n")
        status, _, err = sweep("--report", str(report))
        assert status == EXIT_CHANGED and "changed since the last run" in err
        text = report.read_text()
        assert "## Changes since the last run" in text
        assert "host `lab-003`: nomatch -> matched" in text and "/srv/late/late-ioc.bin" in text

        status, out, err = sweep("--json")
        assert status == 0 and "same as the last run" in err  # found again: no change
        changes = json.loads(out)["changes"]
        assert changes["changed"] is False and changes["steps"] == []
    finally:
        shutil.rmtree(drop)
    status, out, _ = sweep("--json")
    changes = json.loads(out)["changes"]
    assert status == EXIT_CHANGED and changes["changed"]
    assert [row["host"] for row in changes["steps"][0]["removed"]] == ["lab-003"]


# -- the scheduled sweep of contrib/systemd -----------------------------------------------------
SYSTEMD = Path(__file__).resolve().parent.parent / "contrib" / "systemd"


def test_the_sweep_unit_runs_compare_last_and_treats_change_as_an_outcome() -> None:
    unit = (SYSTEMD / "spyglass-sweep@.service").read_text()
    assert "runbook run ${SPYGLASS_RUNBOOK} --compare-last" in unit
    assert f"SuccessExitStatus=1 {EXIT_CHANGED}" in unit
    assert "ExecStopPost=/usr/local/bin/spyglass-notify %i" in unit
    assert "OnCalendar=hourly" in (SYSTEMD / "spyglass-sweep@.timer").read_text()


def test_the_notify_hook_speaks_only_on_change_or_an_incomplete_sweep(tmp_path: Path) -> None:
    sent = tmp_path / "sent"
    fake_mail = tmp_path / "mail"
    fake_mail.write_text(f'#!/bin/sh\necho "$2" >> {sent}\ncat >> {sent}\n')
    fake_mail.chmod(0o755)
    report = tmp_path / "xz.md"
    report.write_text("## Changes since the last run\n")
    for status in (0, 1, EXIT_CHANGED, 3):
        subprocess.run(
            [str(SYSTEMD / "spyglass-notify"), "xz"],
            env={"PATH": f"{tmp_path}:/usr/bin:/bin", "EXIT_STATUS": str(status),
                 "SPYGLASS_REPORT": str(report)},
            check=True,
        )  # fmt: skip
    assert sent.read_text().splitlines() == [
        "spyglass: xz changed since the last sweep",
        "## Changes since the last run",
        "spyglass: sweep xz incomplete (exit 3)",
        "## Changes since the last run",
    ]
