"""ping: TCP, UDP and ICMP against loopback listeners and closed ports, in place and confined."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentd import confine
from modules.base import CollectingContext
from modules.ping import PingModule
from modules.timedrift import TimeDriftModule
from protocol.errors import ParamError
from tests.support.confined_run import operation
from tests.support.netns import needs_netns, run_in_netns
from tests.support.udp import udp_responder

MOD = PingModule()


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


@pytest.fixture
def closed() -> Iterator[int]:
    """A TCP port held bound but not listening: a connect is refused, and no other process can
    take it during the test."""
    with socket.socket() as tcp:
        tcp.bind(("127.0.0.1", 0))
        yield tcp.getsockname()[1]


@pytest.fixture
def closed_udp() -> int:
    """A UDP port nothing is bound to (a bound one would queue the datagram, not refuse it):
    picked by the kernel, then released."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        return int(udp.getsockname()[1])


@pytest.fixture
def udp_echo() -> Iterator[int]:
    """A UDP responder on loopback answering each datagram once, until the test ends."""
    with udp_responder(lambda data: data) as port:
        yield port


def run(**params: Any) -> CollectingContext:
    ctx = CollectingContext(columns=[c.name for c in MOD.columns])
    ctx.stats = MOD.run(MOD.validate(params), ctx)  # type: ignore[attr-defined]
    return ctx


def test_tcp_open_and_closed_ports(listening: int, closed: int) -> None:
    ctx = run(address="127.0.0.1", port=[listening, closed], count=2)
    assert [
        (r["port"], r["status"], r["reachable"], r["sent"], r["answered"]) for r in ctx.rows
    ] == [
        (listening, "open", True, 2, 2),
        (closed, "closed", True, 2, 2),
    ]
    assert all(float(rtt) >= 0 for row in ctx.rows for rtt in row["rtt_ms"])
    assert len(ctx.rows[0]["rtt_ms"]) == 2
    assert ctx.stats == {"attempts": 4, "answered": 4, "matches": 2, "errors": 0}  # type: ignore[attr-defined]


def test_udp_reply_and_port_unreachable(udp_echo: int, closed_udp: int) -> None:
    ctx = run(address="127.0.0.1", protocol="udp", port=[udp_echo, closed_udp], count=1)
    assert [(r["port"], r["status"], r["reachable"]) for r in ctx.rows] == [
        (udp_echo, "open", True),
        (closed_udp, "closed", True),
    ]


def _icmp_allowed() -> bool:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP).close()
    except PermissionError:
        return False
    return True


@pytest.mark.skipif(
    not _icmp_allowed(), reason="no unprivileged ICMP sockets (net.ipv4.ping_group_range)"
)
def test_icmp_echo_of_loopback() -> None:
    ctx = run(address="127.0.0.1", protocol="icmp", count=2)
    assert [(r["status"], r["answered"]) for r in ctx.rows] == [("open", 2)]


@pytest.mark.skipif(_icmp_allowed(), reason="this host allows unprivileged ICMP sockets")
def test_icmp_without_the_right_is_a_soft_error_not_a_row() -> None:
    ctx = run(address="127.0.0.1", protocol="icmp")
    assert ctx.rows == []
    assert ["ping_group_range" in e for e in ctx.errors] == [True]


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"address": "127.0.0.1"}, "port: tcp needs at least one port"),
        ({"address": "127.0.0.1", "protocol": "icmp", "port": [1]}, "port: ICMP has no ports"),
        ({"address": "db.example", "port": [1]}, "address: not an IP address"),
        ({"address": "127.0.0.1", "port": [1], "count": 21}, "count: at most 20"),
        ({"address": "127.0.0.1", "port": [1], "timeout_ms": 60000}, "timeout_ms: at most"),
    ],
)
def test_invalid_params(params: dict[str, Any], problem: str) -> None:
    with pytest.raises(ParamError, match=problem):
        MOD.validate(params)


def test_only_tcp_names_ports_for_the_landlock_rules() -> None:
    assert MOD.connect_ports(MOD.validate({"address": "::1", "port": [22, 443]})) == (22, 443)
    udp = MOD.validate({"address": "::1", "port": [53], "protocol": "udp"})
    assert MOD.connect_ports(udp) == ()


needs_layers = pytest.mark.skipif(
    confine.support().landlock < 4 or not confine.support().seccomp,
    reason=f"needs Landlock ABI 4+ and seccomp: {confine.support()}",
)


@needs_layers
async def test_runs_confined_through_the_agents_child(
    listening: int, closed: int, tmp_path: Path
) -> None:
    params = MOD.validate({"address": "127.0.0.1", "port": [listening, closed], "count": 1})
    outcome, rows = await operation("ping", params, tmp_path)
    assert outcome.status == "ok", outcome
    assert [(r["port"], r["status"]) for r in rows] == [(listening, "open"), (closed, "closed")]


#: Run in a fresh interpreter: confine as ping's child for one signed port, then try others.
_CONFINED_ATTEMPTS = """
import json, socket, sys
from agentd import confine
from modules.ping import PingModule
from modules.timedrift import TimeDriftModule
from modules.agent import AgentModule
signed, other = int(sys.argv[1]), int(sys.argv[2])
module = AgentModule() if sys.argv[3] == "agent" else PingModule()
confine.apply(module, sys.argv[4], (signed,))
out = {}
def attempt(name, make, port=None):
    try:
        with make() as s:
            if port is not None:
                s.connect(("127.0.0.1", port))
        out[name] = "ok"
    except OSError as err:
        out[name] = __import__("errno").errorcode[err.errno]
attempt("signed_port", socket.socket, signed)
attempt("other_port", socket.socket, other)
attempt("udp", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
attempt("raw", lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
print(json.dumps(out))
"""


def _confined(module: str, signed: int, other: int, root: Path) -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, "-c", _CONFINED_ATTEMPTS, str(signed), str(other), module, str(root)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    return dict(json.loads(done.stdout))


@needs_layers
def test_confined_ping_connects_only_to_the_signed_port(tmp_path: Path) -> None:
    with socket.socket() as a, socket.socket() as b:
        for server in (a, b):
            server.bind(("127.0.0.1", 0))
            server.listen()
        signed, other = a.getsockname()[1], b.getsockname()[1]
        assert _confined("ping", signed, other, tmp_path) == {
            "signed_port": "ok",
            "other_port": "EACCES",  # Landlock: not a port of the signed params
            "udp": "ok",  # declared: Landlock cannot filter UDP
            "raw": "EPERM",  # seccomp: never raw sockets
        }
        # A module without a network need gets no IP socket at all, whatever the ports.
        assert _confined("agent", signed, other, tmp_path) == {
            "signed_port": "EPERM",
            "other_port": "EPERM",
            "udp": "EPERM",
            "raw": "EPERM",
        }


def test_an_old_landlock_cannot_restrict_the_port_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ABI 1-3 has no network rules: the ping child's TCP ports are then unrestricted, which the
    agent reports (and ``require_confinement`` refuses) like a missing layer."""
    monkeypatch.setattr(confine, "_support", confine.Support(3, True, ()))
    assert confine.missing(MOD) == [
        "landlock: ABI 3 cannot restrict TCP connect to the signed ports"
    ]
    assert confine.missing(TimeDriftModule()) == []  # UDP only: no Landlock ABI covers it
    monkeypatch.setattr(confine, "_support", confine.Support(4, True, ()))
    assert confine.missing(MOD) == []


#: Run inside a fresh network namespace (loopback up, root's group allowed ICMP sockets there):
#: the ICMP path through the agent's own child (zygote, confinement), reachable and not.
_ICMP_IN_NAMESPACE = """
import asyncio, json, sys
from modules.ping import PingModule
from tests.support.confined_run import operation
module, out = PingModule(), {}
for address in ("127.0.0.1", "::1", "192.0.2.1"):
    params = module.validate({"address": address, "protocol": "icmp", "count": 2})
    outcome, rows = asyncio.run(operation("ping", params, sys.argv[1]))
    out[address] = {"status": outcome.status, "errors": outcome.errors, "rows": rows}
print(json.dumps(out))
"""


@needs_netns
@needs_layers
def test_icmp_echo_confined_in_a_namespace_that_allows_it(tmp_path: Path) -> None:
    """net.ipv4.ping_group_range is per network namespace: in one of its own (the host's is
    untouched), with root's group allowed, the confined child's datagram ICMP socket (the
    ``udp`` network need: seccomp allows datagram sockets, never raw ones) pings loopback
    (IPv4 and IPv6), and an unrouted TEST-NET address is unreachable, reported as such."""
    setup = "ip link set lo up && echo '0 0' > /proc/sys/net/ipv4/ping_group_range"
    out = run_in_netns(setup, _ICMP_IN_NAMESPACE, str(tmp_path), timeout=120)
    for address in ("127.0.0.1", "::1"):
        assert out[address]["status"] == "ok", out[address]
        [row] = out[address]["rows"]
        assert (row["status"], row["reachable"], row["sent"], row["answered"]) == (
            "open",
            True,
            2,
            2,
        )
        assert len(row["rtt_ms"]) == 2
    [row] = out["192.0.2.1"]["rows"]
    assert (row["status"], row["reachable"], row["answered"]) == ("enetunreach", False, 0)
