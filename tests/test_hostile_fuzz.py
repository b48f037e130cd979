"""A short atheris run of the wire decoders (bench/fuzz_frames.py): only ``FrameError`` allowed.

Needs the ``fuzz`` extra (``pip install -e '.[fuzz]'``); skipped without it. The hypothesis tests
in test_protocol_frames.py and test_protocol_messages.py check the same property on every run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parent.parent / "bench" / "fuzz_frames.py"


@pytest.mark.slow
def test_fuzzing_the_frame_and_message_decoders_finds_no_crash(tmp_path: Path) -> None:
    pytest.importorskip("atheris", reason="the fuzz extra (atheris) is not installed")
    done = subprocess.run(
        [sys.executable, str(HARNESS), "-max_total_time=10", "-print_final_stats=1"],
        cwd=tmp_path,  # where libFuzzer would write crash-<sha1>
        env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")},
        capture_output=True,
        text=True,
        timeout=100,
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report[-3000:]
    assert "Done " in report and "stat::number_of_executed_units" in report, report[-3000:]
    assert not list(tmp_path.glob("crash-*"))
    assert len(list((tmp_path / "cache" / "spyglass" / "fuzz_frames").iterdir())) >= 22
