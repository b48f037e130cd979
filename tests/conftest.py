"""Session-wide fixtures: one real lab (real agents, real gpg key) per test worker.

Paths are short (``/tmp/sgXXXX``) because gpg-agent's socket path is length-limited.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from console.lab.local import Lab, lab_down, lab_up

#: Hosts (0-based lab indexes) whose root holds the planted file of the end-to-end tests.
PLANTED = (1, 3)
PLANTED_NAME = "planted-ioc.bin"
LAB_SIZE = 6


def short_tmp(prefix: str = "sg") -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def kill_gpg_agent(home: Path) -> None:
    subprocess.run(
        ["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True, check=False
    )


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """A lab of six agents; lab-002 and lab-004 hold /srv/drop/planted-ioc.bin."""
    directory = short_tmp()
    seeds = directory / "seeds"
    for index in PLANTED:
        drop = seeds / f"lab-{index + 1:03d}" / "srv" / "drop"
        drop.mkdir(parents=True)
        (drop / PLANTED_NAME).write_bytes(b"indicator of compromise\n")
    started = lab_up(directory / "lab", LAB_SIZE, seed_files=seeds)
    try:
        yield started
    finally:
        lab_down(started.dir)
        kill_gpg_agent(started.gnupghome)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def lab_env(lab: Lab, tmp_path: Path) -> dict[str, str]:
    """Environment for running the `spyglass` CLI against the lab, with a fresh store."""
    return {
        **os.environ,
        "GNUPGHOME": str(lab.gnupghome),
        "SPYGLASS_INVENTORY": str(lab.inventory),
        "SPYGLASS_STORE": str(tmp_path / "results.db"),
    }
