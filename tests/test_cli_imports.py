"""Start-up: each command imports only what it uses (``python -X importtime``, no clock).

``spyglass --help`` took half a second when every command imported asyncssh, cryptography, the
TUI and every module's heavy dependencies; these are the packages each command may not load.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

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


#: In a fresh interpreter: which libraries asyncssh's import looks for, after the lean start-up.
_ASKED = """
import ctypes.util, json, sys
asked = []
real = ctypes.util.find_library
ctypes.util.find_library = lambda name: asked.append(name) or real(name)
if sys.argv[1] == "console":
    from console.cli.lean import leave_out_unused
    leave_out_unused()
else:
    from agentd import lean
    lean.leave_out(lean.ASYNCSSH_EXTRAS)
import asyncssh
from asyncssh.crypto import mlkem_available
kex = [k if isinstance(k, str) else k.decode() for k in asyncssh.kex.get_kex_algs()]
print(json.dumps({"asked": asked, "mlkem": mlkem_available, "kex": kex}))
"""


@pytest.mark.parametrize("side", ["console", "agent"])
def test_no_search_for_liboqs_at_start(side: str) -> None:
    """asyncssh searches for liboqs (ldconfig, then gcc and ld: 20 to 40 ms) for sntrup761,
    which neither end offers; the lean start-up skips that search and keeps ML-KEM."""
    done = subprocess.run(
        [sys.executable, "-c", _ASKED, side], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert not {"oqs", "liboqs"} & set(out["asked"])
    assert out["mlkem"] and "mlkem768x25519-sha256" in out["kex"]
