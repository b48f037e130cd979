"""What the session's lab (conftest ``lab``) holds: its size, and where the planted file is; and
a lab of its own for the tests that need another (more agents, skewed clocks)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from console.lab.local import Lab, lab_down, lab_up
from tests.support.paths import kill_gpg_agent, short_tmp

#: Hosts (0-based lab indexes) whose root holds the planted file of the end-to-end tests.
PLANTED = (1, 3)
PLANTED_NAME = "planted-ioc.bin"
LAB_SIZE = 6


@contextmanager
def running_lab(
    size: int, drops: Mapping[int, tuple[str, bytes]] | None = None, prefix: str = "sg"
) -> Iterator[Lab]:
    """``size`` real agents; ``drops`` maps a 0-based lab index to a file (name, content) in
    that host's /srv/drop. Stopped, with the gpg-agent of its key, at the end of the block."""
    directory = short_tmp(prefix)
    seeds = directory / "seeds"
    for index, (name, content) in (drops or {}).items():
        drop = seeds / f"lab-{index + 1:03d}" / "srv" / "drop"
        drop.mkdir(parents=True)
        (drop / name).write_bytes(content)
    started = lab_up(directory / "lab", size, seed_files=seeds if drops else None)
    try:
        yield started
    finally:
        lab_down(started.dir)
        kill_gpg_agent(started.gnupghome)
        shutil.rmtree(directory, ignore_errors=True)
