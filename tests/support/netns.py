"""Running a Python script in a network namespace of its own, built by a shell set-up line.

Nothing of the host's network changes: the namespace (``unshare --net``) lives as long as the
script. Tests that need one carry ``needs_netns`` (root, unshare and ip)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]

_MARKS = (
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(
        shutil.which("unshare") is None or shutil.which("ip") is None,
        reason="needs unshare (util-linux) and ip (iproute2) to build the namespace",
    ),
)


def needs_netns(test: Callable[..., None]) -> Callable[..., None]:
    """Marks a test that builds a namespace: skipped, with the reason, where it cannot."""
    for mark in _MARKS:
        test = mark(test)
    return test


def run_in_netns(setup: str, script: str, *args: str, timeout: float = 60) -> Any:
    """Run ``setup`` (shell), then ``script`` with ``args`` in the namespace: its JSON output."""
    shell = f'{setup} && exec "$0" "$@"'
    done = subprocess.run(
        ["unshare", "--net", "sh", "-c", shell, sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
    )
    if done.returncode != 0 and "unshare failed" in done.stderr:
        pytest.skip(f"no network namespace here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
