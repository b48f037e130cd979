"""Start-up: each command imports only what it uses (``python -X importtime``, no clock).

``spyglass --help`` took half a second when every command imported asyncssh, cryptography, the
TUI and every module's heavy dependencies; these are the packages each command may not load.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.support.cli import SPYGLASS

#: Imported only by the commands that need them.
HEAVY = {
    "asyncssh",
    "cryptography",
    "textual",
    "rich",
    "gnupg",
    "yara",
    "psutil",
    "asyncio",
    "uvloop",
}
NEEDS: dict[tuple[str, ...], set[str]] = {
    ("--help",): set(),
    ("modules", "list"): set(),
    ("modules", "list", "--json"): set(),
    ("modules", "show", "yara"): set(),
    ("results", "list"): set(),
    ("results", "--help"): set(),
    ("run", "--help"): set(),
    ("run", "file", "--help"): set(),
    ("runbook", "--help"): set(),
    ("inventory", "list"): set(),
    # run: SSH, its event loop, and gpg to sign; never the TUI, yara or psutil
    ("run", "agent", "-t", "all"): {"asyncssh", "cryptography", "asyncio", "uvloop", "gnupg"},
}


def imported(env: dict[str, str], *args: str) -> set[str]:
    """The top-level packages `spyglass ARGS` imported (the command must succeed)."""
    done = subprocess.run(
        [*SPYGLASS[:1], "-X", "importtime", *SPYGLASS[1:], *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    names = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)$", done.stderr, re.M)
    assert "console" in {name.split(".")[0] for name in names}
    return {name.split(".")[0] for name in names}


@pytest.mark.parametrize("args", list(NEEDS), ids=" ".join)
def test_each_command_imports_only_what_it_uses(
    args: tuple[str, ...], lab_env: dict[str, str]
) -> None:
    loaded = imported(lab_env, *args) & HEAVY
    assert loaded <= NEEDS[args], (
        f"spyglass {' '.join(args)} imported {sorted(loaded - NEEDS[args])}"
    )
