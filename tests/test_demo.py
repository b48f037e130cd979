"""`spyglass demo --headless` (`make demo DEMO_ARGS=--headless`) finds the planted shells."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

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
        signing_agents = gpg_agents(directory)
    finally:
        lab_down(directory)
    assert signing_agents and wait_gone(
        signing_agents
    )  # `lab down` stopped the lab key's gpg-agent too
    assert done.returncode == 0, done.stderr
    store = directory.resolve() / "results.db"
    assert "the lab is still running" in done.stderr
    assert f"SPYGLASS_STORE={store}" in done.stderr and store.exists()
    assert f"spyglass lab down --dir {directory.resolve()}" in done.stderr
    planted = {f"lab-{i + 1:03d}" for i in range(AGENTS) if has_webshell(i)}
    found = {line.split("\t")[0] for line in done.stdout.splitlines() if ".cache.php" in line}
    assert found == planted and planted


def wait_gone(pids: list[int], deadline: float = 10.0) -> bool:
    """Whether every process of ``pids`` exits within ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while any(Path(f"/proc/{pid}").exists() for pid in pids):
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


def gpg_agents(directory: Path) -> list[int]:
    """Pids of the gpg-agents serving a GNUPGHOME under ``directory``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"gpg-agent") and str(directory).encode() in b" ".join(argv):
            found.append(int(proc.name))
    return found
