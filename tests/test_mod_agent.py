"""agent: one row describing this very host, checked against what the test itself can see."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from modules.agent import AgentModule, with_prefix
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


@pytest.mark.skipif(shutil.which("ip") is None, reason="no iproute2 to compare with")
def test_addresses_carry_their_prefix_as_ip_addr_shows_it() -> None:
    """IPv4 and IPv6 alike (``fd00::2/64``, ``fe80::.../64``): what ``ip addr`` lists."""
    shown = json.loads(
        subprocess.run(
            ["ip", "-j", "addr", "show"], capture_output=True, text=True, check=True
        ).stdout
    )
    want = {
        f"{link['ifname']} {a['local']}/{a['prefixlen']}"
        for link in shown
        for a in link.get("addr_info", [])
        if a.get("family") in ("inet", "inet6") and not ipaddress.ip_address(a["local"]).is_loopback
    }
    assert set(run_agent()["addresses"]) == want  # type: ignore[arg-type]


def test_prefix_from_any_netmask() -> None:
    assert with_prefix("fe80::1%eth0", "ffff:ffff:ffff:ffff::") == "fe80::1/64"
    assert (
        with_prefix("2001:db8::7", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff") == "2001:db8::7/128"
    )
    assert with_prefix("10.1.2.3", "255.255.0.0") == "10.1.2.3/16"
    assert with_prefix("10.1.2.3", "255.0.255.0") == "10.1.2.3"  # no prefix is that mask
    assert with_prefix("10.1.2.3", None) == "10.1.2.3"
    assert with_prefix("10.1.2.3", "ffff::") == "10.1.2.3"  # a mask of the other family


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
