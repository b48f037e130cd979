"""Session-wide fixtures: one real lab (real agents, real gpg key) per test worker."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from console.lab.local import Lab
from protocol.signing import Signer, generate_key
from tests.support.lab import LAB_SIZE, PLANTED, PLANTED_NAME, running_lab
from tests.support.paths import kill_gpg_agent, short_tmp
from tests.support.protocol_keys import Investigator, KeyFactory


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """A lab of six agents; lab-002 and lab-004 hold /srv/drop/planted-ioc.bin."""
    planted = {index: (PLANTED_NAME, b"indicator of compromise\n") for index in PLANTED}
    with running_lab(LAB_SIZE, planted) as started:
        yield started


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


@pytest.fixture(scope="module")
def keys() -> Iterator[KeyFactory]:
    """Investigators and keyring homes for one module's tests, removed after them (modules
    with a key helper of their own name it ``keys`` too)."""
    factory = KeyFactory()
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="module")
def alice(keys: KeyFactory) -> Investigator:
    return keys.investigator("Alice")
