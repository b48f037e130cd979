"""agent: one row describing this very host, checked against what the test itself can see."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from modules.agent import AgentModule
from modules.base import CollectingContext
from modules.registry import all_modules
from protocol.errors import ParamError

MOD = AgentModule()
REPO = Path(__file__).resolve().parent.parent


def run_agent() -> dict[str, object]:
    ctx = CollectingContext(columns=[c.name for c in MOD.columns])
    assert MOD.run(MOD.validate({}), ctx) == {"rows": 1}
    assert ctx.errors == []
    [row] = ctx.rows
    return row


def test_identity_of_this_host() -> None:
    row = run_agent()
    uname = os.uname()
    assert row["hostname"] == socket.gethostname()
    assert row["kernel"] == f"{uname.sysname} {uname.release} {uname.machine}"
    assert isinstance(row["os"], str) and row["os"]
    with open("/proc/uptime") as f:
        assert abs(row["uptime"] - float(f.read().split()[0])) < 5  # type: ignore[operator]
    assert row["modules"] == [m.name for m in all_modules()]
    assert "agent" in row["modules"] and "file" in row["modules"]
    assert isinstance(row["agent_version"], str) and row["agent_version"]


def test_addresses_leave_out_loopback() -> None:
    addresses = run_agent()["addresses"]
    assert isinstance(addresses, list)
    assert all(" " in a for a in addresses)  # "iface address/prefix"
    assert not any(a.split()[1].startswith(("127.", "::1")) for a in addresses)


def test_no_params_accepted() -> None:
    with pytest.raises(ParamError, match=r"^agent: x: unknown parameter$"):
        MOD.validate({"x": 1})


def test_limits_are_those_of_the_running_process() -> None:
    """The agent's child sets rlimits before running a module; the row reports them."""
    code = (
        "import json, resource, os\n"
        "resource.setrlimit(resource.RLIMIT_CPU, (77, 78))\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 33, 1 << 33))\n"
        "os.nice(3)\n"
        "from modules.agent import limits\n"
        "print(json.dumps(limits()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout
    got = json.loads(out)
    assert "cpu_seconds=77" in got
    assert f"address_space={1 << 33}" in got
    assert f"nice={os.getpriority(os.PRIO_PROCESS, 0) + 3}" in got
