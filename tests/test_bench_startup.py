"""bench/startup.py in its smallest configuration: every row measured, the run's first
connection seen through the forwarder (the benchmark fails if the run never connects)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "startup.py"


def test_startup_bench_measures_every_row() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--rounds", "1"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = dict(re.findall(r"^(\S.*?)\s+(\d+\.\d) ms", done.stdout, re.M))
    assert set(rows) == {
        "python -c pass (baseline)",
        "spyglass --help",
        "spyglass modules list",
        "run: first connection",
        "run: to its exit",
    }
    assert 0 < float(rows["run: first connection"]) < float(rows["run: to its exit"])
