"""Session-wide fixtures: one real lab (real agents, real gpg key) per test worker."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from console.lab.local import Lab, lab_down, lab_up
from protocol.signing import Signer, generate_key
from tests.support.lab import LAB_SIZE, PLANTED, PLANTED_NAME
from tests.support.paths import kill_gpg_agent, short_tmp


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


@pytest.fixture(scope="session")
def signer() -> Iterator[Signer]:
    """The investigator key of tests that need one key of their own agents to trust: one per
    session (tests that need several keys, or remove one, make their own)."""
    home = short_tmp("g")
    generate_key(home)
    try:
        yield Signer(home)
    finally:
        kill_gpg_agent(home)
