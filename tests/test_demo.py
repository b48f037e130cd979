"""`spyglass demo --headless` (`make demo DEMO_ARGS=--headless`) finds the planted shells."""

from __future__ import annotations

import os
import subprocess

from console.lab.local import lab_down
from console.lab.seed import has_webshell
from tests.support.cli import SPYGLASS
from tests.support.paths import short_tmp

AGENTS = 8


def test_headless_demo_finds_every_planted_web_shell() -> None:
    directory = short_tmp("dm")
    try:
        done = subprocess.run(
            [
                *SPYGLASS,
                "demo",
                "--headless",
                "--agents",
                str(AGENTS),
                "--dir",
                str(directory),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={k: v for k, v in os.environ.items() if k != "GNUPGHOME"},
        )
    finally:
        lab_down(directory)
    assert done.returncode == 0, done.stderr
    planted = {f"lab-{i + 1:03d}" for i in range(AGENTS) if has_webshell(i)}
    found = {line.split("\t")[0] for line in done.stdout.splitlines() if ".cache.php" in line}
    assert found == planted and planted
