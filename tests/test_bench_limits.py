"""The lab raises its open-file limit for large fleets (10,000 agents, a connection each) up to
the hard limit, and says plainly when even that is too low."""

from __future__ import annotations

import resource
import subprocess
import sys

SCRIPT = """
import resource
from console.lab.local import raise_fd_limit
from protocol.errors import ConfigError
print(raise_fd_limit(500), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
try:
    raise_fd_limit(5000)
except ConfigError as err:
    print(err)
"""


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 1024))


def test_soft_limit_raised_to_the_hard_one_and_a_clear_error_beyond() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        preexec_fn=_limited,
        capture_output=True,
        text=True,
        check=True,
    )
    raised, message = done.stdout.splitlines()
    assert raised == "1024 1024"
    assert "5000 open files are needed but the hard limit is 1024" in message
    assert "ulimit -Hn" in message
