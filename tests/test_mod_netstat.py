"""netstat: sockets of a child process made by the test, loopback interface, neighbour tables."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from modules.base import CollectingContext
from modules.netstat import NetstatModule, _linux
from protocol.errors import ParamError
from tests.support.mod_child import running_child

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


PROC_ARP = """\
IP address       HW type     Flags       HW address            Mask     Device
192.0.2.1        0x1         0x2         02:FC:00:00:00:05     *        eth0
192.0.2.9        0x1         0x0         00:00:00:00:00:00     *        eth0
"""
IP_NEIGH = json.dumps(
    [
        {"dst": "192.0.2.1", "dev": "eth0", "lladdr": "02:fc:00:00:00:05", "state": ["STALE"]},
        {"dst": "fd00::1", "dev": "eth0", "lladdr": "02:fc:00:00:00:06", "state": ["REACHABLE"]},
        {"dst": "fd00::2", "dev": "eth0", "state": ["FAILED"]},
    ]
)


def test_neighbour_parsers() -> None:
    assert _linux.parse_proc_arp(PROC_ARP) == [
        _linux.Neighbour("192.0.2.1", "02:fc:00:00:00:05", "eth0", None)
    ]
    assert _linux.parse_ip_neigh_json(IP_NEIGH) == [
        _linux.Neighbour("192.0.2.1", "02:fc:00:00:00:05", "eth0", "STALE"),
        _linux.Neighbour("fd00::1", "02:fc:00:00:00:06", "eth0", "REACHABLE"),
    ]


def test_neighbour_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    table = _linux.parse_ip_neigh_json(IP_NEIGH)
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
        "state": "02:fc:00:00:00:06 REACHABLE",
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
    ctx = run(neighbor_ip=["0.0.0.0/0", "::/0"])
    assert ctx.errors == []
    assert all(r["proto"] in ("arp", "ndp") for r in ctx.rows)


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
