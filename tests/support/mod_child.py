"""The process that the process, netstat and yara module tests investigate
(tests/data/mod/child.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHILD = Path(__file__).parent.parent / "data" / "mod" / "child.py"


@contextmanager
def running_child(marker: str, *args: str) -> Iterator[dict[str, Any]]:
    """Start the child with ``args``, hand it ``marker`` to hold in memory, and yield what it
    reports (pid, ports); it exits when the block ends."""
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(marker + "\n")
    proc.stdin.flush()
    info = json.loads(proc.stdout.readline())
    yield info
    proc.stdin.close()
    proc.wait(timeout=10)
    proc.stdout.close()
