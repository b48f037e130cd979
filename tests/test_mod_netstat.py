"""netstat: sockets of a child process made by the test, loopback interface, neighbour tables."""

from __future__ import annotations

import errno
import json
import shutil
import socket
import struct
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from agentd import confine
from modules.base import CollectingContext
from modules.netstat import NetstatModule, _linux
from protocol.errors import ParamError
from tests.support.mod_child import running_child
from tests.support.netns import needs_netns, run_in_netns

MOD = NetstatModule()


@pytest.fixture(scope="module")
def child() -> Iterator[dict[str, Any]]:
    with running_child("netstat-test") as info:
        yield info


def run(**params: Any) -> CollectingContext:
    ctx = CollectingContext(columns=[c.name for c in MOD.columns])
    ctx.stats = MOD.run(MOD.validate(params), ctx)  # type: ignore[attr-defined]
    return ctx


def of(ctx: CollectingContext, pid: int) -> list[dict[str, Any]]:
    return [r for r in ctx.rows if r["pid"] == pid]


def test_listening_tcp_port_with_owner(child: dict[str, Any]) -> None:
    ctx = run(listening_port=[child["tcp_port"]])
    assert of(ctx, child["pid"]) == [
        {
            "check": "listening_port",
            "value": str(child["tcp_port"]),
            "proto": "tcp4",
            "local_addr": "127.0.0.1",
            "local_port": child["tcp_port"],
            "remote_addr": None,
            "remote_port": None,
            "state": "LISTEN",
            "pid": child["pid"],
            "process": ctx.rows[0]["process"],
        }
    ]
    assert ctx.rows[0]["process"].startswith("python")


def test_listening_udp_and_tcp6(child: dict[str, Any]) -> None:
    [udp] = of(run(listening_port=[child["udp_port"]]), child["pid"])
    assert (udp["proto"], udp["state"], udp["local_port"]) == ("udp4", None, child["udp_port"])
    if child["tcp6_port"] is None:
        pytest.skip("no IPv6 loopback")
    [tcp6] = of(run(listening_port=[child["tcp6_port"]]), child["pid"])
    assert (tcp6["proto"], tcp6["local_addr"], tcp6["state"]) == ("tcp6", "::1", "LISTEN")


def test_listening_port_does_not_match_connected_or_free_ports(child: dict[str, Any]) -> None:
    # the client end of the child's own connection is bound to client_port but does not listen
    assert of(run(listening_port=[child["client_port"]]), child["pid"]) == []
    assert run(listening_port=[1]).rows == []


def test_connected_ip_and_cidr(child: dict[str, Any]) -> None:
    for value in ("127.0.0.1", "127.0.0.0/8"):
        rows = of(run(connected_ip=[value]), child["pid"])
        pairs = {(r["local_port"], r["remote_port"]) for r in rows}
        assert pairs == {
            (child["client_port"], child["tcp_port"]),
            (child["tcp_port"], child["client_port"]),
        }
        assert {r["state"] for r in rows} == {"ESTABLISHED"}
        assert {r["check"] for r in rows} == {"connected_ip"}
        assert {r["value"] for r in rows} == {value}
    assert of(run(connected_ip=["192.0.2.0/24"]), child["pid"]) == []


def test_local_ip_and_cidr() -> None:
    rows = run(local_ip=["127.0.0.1"]).rows
    assert {(r["local_addr"], r["proto"], r["state"]) for r in rows} == {
        ("127.0.0.1", "inet", "lo")
    }
    assert any(r["local_addr"] == "127.0.0.1" for r in run(local_ip=["127.0.0.0/8"]).rows)
    assert run(local_ip=["198.51.100.7"]).rows == []


def test_local_mac_any_case() -> None:
    import psutil

    macs = {
        a.address
        for addrs in psutil.net_if_addrs().values()
        for a in addrs
        if a.family == psutil.AF_LINK
    }
    rows = run(local_mac=["^00:00:00:00:00:00$"]).rows  # the loopback's
    assert ("00:00:00:00:00:00" in macs) == bool(rows)
    real = sorted(m for m in macs if m != "00:00:00:00:00:00")
    if real:
        upper = real[0].upper()
        assert {r["local_addr"] for r in run(local_mac=[upper]).rows} == {real[0]}
    assert run(local_mac=["^fe:ed:fa:ce:be:ef$"]).rows == []


def _nlmsg(kind: int, payload: bytes, seq: int = 1) -> bytes:
    data = struct.pack("=IHHII", 16 + len(payload), kind, 2, seq, 0) + payload
    return data + b"\0" * (-len(data) % 4)


def _attr(kind: int, value: bytes) -> bytes:
    data = struct.pack("=HH", 4 + len(value), kind) + value
    return data + b"\0" * (-len(data) % 4)


def _neigh(family: int, index: int, state: int, dst: str, mac: str | None) -> bytes:
    import ipaddress

    payload = struct.pack("=BxxxiHBB", family, index, state, 0, 1)
    payload += _attr(1, ipaddress.ip_address(dst).packed)
    if mac is not None:
        payload += _attr(2, bytes.fromhex(mac.replace(":", "")))
    return _nlmsg(28, payload)


#: One dump datagram as the kernel sends it: an IPv4 entry, an IPv6 one, a FAILED one without a
#: link-layer address, an answer to another request, and the end of the dump.
DUMP = b"".join(
    [
        _neigh(socket.AF_INET, 2, 0x04, "192.0.2.1", "02:FC:00:00:00:05"),
        _neigh(socket.AF_INET6, 2, 0x02 | 0x80, "fd00::1", "02:fc:00:00:00:06"),
        _neigh(socket.AF_INET6, 2, 0x20, "fd00::2", None),
        _nlmsg(28, b"", seq=9),
        _nlmsg(3, b"\0\0\0\0"),
    ]
)
NAMES = {2: "eth0"}


def test_neighbour_dump_parser() -> None:
    table, done = _linux.parse_dump(DUMP, 1, NAMES)
    assert done
    assert table == [
        _linux.Neighbour("192.0.2.1", "02:fc:00:00:00:05", "eth0", "STALE"),
        _linux.Neighbour("fd00::1", "02:fc:00:00:00:06", "eth0", "REACHABLE PERMANENT"),
    ]
    # a dump goes on in the next datagram until NLMSG_DONE; unnamed interfaces show their index
    first = _neigh(socket.AF_INET, 7, 0x40, "192.0.2.9", "02:fc:00:00:00:09")
    assert _linux.parse_dump(first, 1, {}) == (
        [_linux.Neighbour("192.0.2.9", "02:fc:00:00:00:09", "7", "NOARP")],
        False,
    )


def test_neighbour_dump_errors() -> None:
    refused = _nlmsg(2, struct.pack("=i", -errno.EPERM) + b"\0" * 16)
    with pytest.raises(OSError) as err:
        _linux.parse_dump(refused, 1, NAMES)
    assert err.value.errno == errno.EPERM
    with pytest.raises(OSError, match="truncated netlink message"):
        _linux.parse_dump(DUMP[:40], 1, NAMES)  # inside the first message
    assert _linux.parse_neighbour(b"\0" * 4, NAMES) is None  # shorter than an ndmsg


def test_neighbour_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    table, _ = _linux.parse_dump(DUMP, 1, NAMES)
    monkeypatch.setattr(_linux, "neighbours", lambda: (table, []))
    [row] = run(neighbor_mac=["02:FC:00:00:00:06"]).rows
    assert row == {
        "check": "neighbor_mac",
        "value": "02:FC:00:00:00:06",
        "proto": "ndp",
        "local_addr": "eth0",
        "local_port": None,
        "remote_addr": "fd00::1",
        "remote_port": None,
        "state": "02:fc:00:00:00:06 REACHABLE PERMANENT",
        "pid": None,
        "process": None,
    }
    assert run(neighbor_mac=["^aa:"]).rows == []
    [row] = run(neighbor_ip=["192.0.2.0/24"]).rows
    assert (row["proto"], row["remote_addr"], row["state"]) == (
        "arp",
        "192.0.2.1",
        "02:fc:00:00:00:05 STALE",
    )
    assert run(neighbor_ip=["fd00::2"]).rows == []  # FAILED: never seen


def test_neighbour_table_of_this_host() -> None:
    """Read over rtnetlink, so it works in the confined child too (no tool to run)."""
    with open("/proc/net/arp") as f:  # the kernel's own IPv4 view, complete entries
        arp = {
            line.split()[0]
            for line in f.read().splitlines()[1:]
            if line.split()[3] != "00:00:00:00:00:00"
        }
    ctx = run(neighbor_ip=["0.0.0.0/0", "::/0"])
    assert ctx.errors == []
    assert all(r["proto"] in ("arp", "ndp") for r in ctx.rows)
    assert arp <= {r["remote_addr"] for r in ctx.rows if r["proto"] == "arp"}


@pytest.mark.skipif(shutil.which("ip") is None, reason="no iproute2 to compare with")
def test_neighbour_table_agrees_with_ip_neigh() -> None:
    """The same entries as ``ip neigh show nud all`` (those with a link-layer address); the
    table may change between the two reads, so they are compared a few times."""
    for _ in range(5):
        done = subprocess.run(
            ["ip", "-j", "neigh", "show", "nud", "all"], capture_output=True, text=True, check=True
        )
        table, errors = _linux.neighbours()
        theirs = {
            (e["dst"], e["lladdr"], e["dev"], " ".join(e.get("state", [])) or None)
            for e in json.loads(done.stdout)
            if e.get("lladdr")
        }
        if {(n.ip, n.mac, n.dev, n.state) for n in table} == theirs:
            break
    assert errors == []
    assert {(n.ip, n.mac, n.dev, n.state) for n in table} == theirs


NAMESPACE_SCRIPT = """
import json, sys
from agentd import confine
from modules.base import CollectingContext
from modules.registry import get_module
module = get_module("netstat")
if confine.support().seccomp:
    confine.plan_for(module)
    confine.apply(module, "/")
ctx = CollectingContext()
params = module.validate({"neighbor_ip": ["fd00:5::/64", "198.51.100.0/24"]})
module.run(params, ctx)
print(json.dumps({"rows": ctx.rows, "errors": ctx.errors, "confinement": confine.in_force()}))
"""


@needs_netns
def test_ipv6_and_ipv4_neighbours_in_a_namespace_confined() -> None:
    """In a network namespace of its own (nothing of the host's changes): a veth pair with a
    permanent IPv6 neighbour, a reachable IPv4 one and an incomplete IPv6 one, read by the
    module confined as the agent confines it (seccomp: no exec, netlink allowed)."""
    setup = (
        "ip link add v0 type veth peer name v1 && ip link set v0 up && ip link set v1 up && "
        "ip -6 neigh add fd00:5::7 lladdr 02:00:00:00:05:07 dev v0 nud permanent && "
        "ip neigh add 198.51.100.7 lladdr 02:00:00:00:05:08 dev v0 nud reachable && "
        "ip -6 neigh add fd00:5::9 dev v0 nud incomplete"
    )
    out = run_in_netns(setup, NAMESPACE_SCRIPT)
    assert out["errors"] == []
    if confine.support().seccomp:
        assert "seccomp" in out["confinement"]
    assert sorted(
        (r["proto"], r["remote_addr"], r["local_addr"], r["state"]) for r in out["rows"]
    ) == [
        ("arp", "198.51.100.7", "v0", "02:00:00:00:05:08 REACHABLE"),
        ("ndp", "fd00:5::7", "v0", "02:00:00:00:05:07 PERMANENT"),
    ]


def test_several_checks_in_one_run(child: dict[str, Any]) -> None:
    ctx = run(listening_port=[child["tcp_port"]], local_ip=["127.0.0.1"])
    assert {r["check"] for r in ctx.rows} >= {"listening_port", "local_ip"}


def test_some_check_is_required() -> None:
    with pytest.raises(ParamError, match=r"^netstat: local_mac: give at least one of"):
        MOD.validate({})
    with pytest.raises(ParamError, match=r"connected_ip\[0\]: not an IP address or CIDR"):
        MOD.validate({"connected_ip": ["10.0.0.0/33"]})
    with pytest.raises(ParamError, match=r"listening_port\[0\]: port out of range"):
        MOD.validate({"listening_port": [70000]})


def test_listening_lists_every_listening_socket(child: dict[str, Any]) -> None:
    """``--listening`` needs no port: every TCP listener and bound UDP socket, with its owner;
    the child's connected sockets are not among them."""
    rows = of(run(listening=True), child["pid"])
    want = {("tcp4", "127.0.0.1", child["tcp_port"]), ("udp4", "127.0.0.1", child["udp_port"])}
    if child["tcp6_port"] is not None:
        want.add(("tcp6", "::1", child["tcp6_port"]))
    assert {(r["proto"], r["local_addr"], r["local_port"]) for r in rows} == want
    assert {(r["check"], r["value"], r["remote_addr"]) for r in rows} == {
        ("listening", "true", None)
    }
    assert {r["state"] for r in rows if r["proto"].startswith("tcp")} == {"LISTEN"}


def test_a_connected_udp_socket_is_not_listening() -> None:
    """A UDP socket with a peer (connect sends nothing) answers only that peer: it is a
    connection, not a listener."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.connect(("127.0.0.1", 9))
        port = udp.getsockname()[1]
        listening = run(listening=True).rows
        connected = run(connected_ip=["127.0.0.1"]).rows
    # matched by address, not owner: a confined run's forked child holds the socket too
    bound = {(r["proto"], r["local_addr"], r["local_port"]) for r in listening}
    assert ("udp4", "127.0.0.1", port) not in bound
    assert ("udp4", port, 9) in {(r["proto"], r["local_port"], r["remote_port"]) for r in connected}


def test_listening_and_a_port_in_one_run(child: dict[str, Any]) -> None:
    rows = of(run(listening=True, listening_port=[child["udp_port"]]), child["pid"])
    assert sorted(r["check"] for r in rows if r["local_port"] == child["udp_port"]) == [
        "listening",
        "listening_port",
    ]
