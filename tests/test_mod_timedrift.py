"""timedrift: a clock offset injected through the module's time source, against the console's
signed send time and a local SNTP responder on 127.0.0.1."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentd import confine
from console.lab.local import Lab
from modules.base import CollectingContext
from modules.timedrift import CLOCK_OFFSET_ENV, TimeDriftModule, now_ms, parse_drift
from protocol.errors import ParamError
from tests.support.cli import console_env, events, spyglass
from tests.support.confined_run import operation
from tests.support.lab import running_lab
from tests.support.udp import udp_responder

MOD = TimeDriftModule()
OFF_MS = 7_000  # the endpoint's clock, seven seconds ahead


@pytest.fixture
def ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CLOCK_OFFSET_ENV, str(OFF_MS))


def _ntp(ms: float) -> bytes:
    seconds, rest = divmod(ms / 1000, 1)
    return struct.pack("!II", int(seconds) + 2_208_988_800, int(rest * 2**32))


@pytest.fixture
def ntp_server() -> Iterator[int]:
    """An SNTP responder with the machine's true clock (stratum 2, origin echoed)."""

    def answer(request: bytes) -> bytes:
        stamp = _ntp(time.time_ns() / 1e6)
        header = bytes([0x24, 2, 0, 0]) + bytes(8) + b"LOCL"
        return header + bytes(8) + request[40:48] + stamp + stamp

    with udp_responder(answer) as port:
        yield port


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A bound UDP port that never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def run(**params: Any) -> CollectingContext:
    ctx = CollectingContext(columns=[c.name for c in MOD.columns])
    ctx.stats = MOD.run(MOD.validate(params), ctx)  # type: ignore[attr-defined]
    return ctx


def test_the_injected_offset_moves_the_modules_clock_only(ahead: None) -> None:
    before = time.time_ns() // 1_000_000
    assert now_ms() - before >= OFF_MS


def test_offset_against_the_consoles_signed_time(ahead: None) -> None:
    sent = time.time_ns() // 1_000_000  # the console's (true) clock
    ctx = run(console_time_ms=sent)
    [row] = ctx.rows
    assert row["reference"] == "console" and row["status"] == "ok"
    # Ahead by the injected offset plus the transit, which only adds.
    assert OFF_MS <= row["offset_ms"] < OFF_MS + 60_000
    assert row["delay_ms"] is None and row["drifted"] is False


def test_drift_matches_only_hosts_off_by_more(ahead: None) -> None:
    sent = time.time_ns() // 1_000_000
    assert [r["drifted"] for r in run(console_time_ms=sent, drift="5s").rows] == [True]
    assert run(console_time_ms=sent, drift="1h").rows == []


def test_a_correct_clock_is_not_drifted() -> None:
    assert run(console_time_ms=now_ms(), drift="5s").rows == []


def test_sntp_against_a_local_responder(ahead: None, ntp_server: int) -> None:
    ctx = run(ntp=["127.0.0.1"], ntp_port=ntp_server, drift="5s")
    [row] = ctx.rows
    assert row["reference"] == f"ntp 127.0.0.1:{ntp_server}" and row["drifted"]
    assert OFF_MS - 1000 < row["offset_ms"] < OFF_MS + 1000  # the server's delay is measured
    assert row["delay_ms"] >= 0


def test_sntp_with_a_true_clock(ntp_server: int) -> None:
    [row] = run(ntp=["127.0.0.1"], ntp_port=ntp_server).rows
    assert abs(row["offset_ms"]) < 1000 and row["drifted"] is False


def test_a_silent_server_is_a_soft_error(silent_port: int) -> None:
    ctx = run(ntp=["127.0.0.1"], ntp_port=silent_port, timeout_ms=50)
    assert [r["status"].startswith("no time") for r in ctx.rows] == [True]
    assert ctx.rows[0]["offset_ms"] is None
    assert len(ctx.errors) == 1


def test_the_console_stamps_its_time_and_the_users_value_wins() -> None:
    before = now_ms()
    stamped = MOD.stamp({"drift": "5s"})
    assert stamped["console_time_ms"] >= before and stamped["drift"] == "5s"
    assert MOD.stamp({"console_time_ms": 1})["console_time_ms"] == 1


@pytest.mark.parametrize("text", ["5", "5 s", "-5s", "5d"])
def test_invalid_drift(text: str) -> None:
    with pytest.raises(ParamError, match="drift: invalid duration"):
        MOD.validate({"drift": text})


def test_drift_units() -> None:
    assert [parse_drift(t) for t in ("500ms", "5s", "2m", "1h")] == [500, 5000, 120000, 3600000]


@pytest.mark.skipif(not confine.support().seccomp, reason=f"no seccomp: {confine.support()}")
async def test_sntp_runs_confined_through_the_agents_child(ntp_server: int, tmp_path: Path) -> None:
    params = MOD.validate({"ntp": ["127.0.0.1"], "ntp_port": ntp_server})
    outcome, rows = await operation("timedrift", params, tmp_path)
    assert outcome.status == "ok", outcome
    assert [r["status"] for r in rows] == ["ok"]


@pytest.fixture
def skewed_lab(monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    """Two lab agents whose clocks run ``OFF_MS`` ahead (the console's does not)."""
    monkeypatch.setenv(CLOCK_OFFSET_ENV, str(OFF_MS))
    with running_lab(2) as started:
        monkeypatch.delenv(CLOCK_OFFSET_ENV)
        yield started


def test_inventory_check_and_timedrift_agree(skewed_lab: Lab, tmp_path: Path) -> None:
    env = console_env(skewed_lab, skewed_lab.inventory, tmp_path / "results.db")
    check = spyglass(env, "inventory", "check", "--hello-only", "--json")
    assert check.returncode == 0, check.stderr
    skews = {h["host"]: h["skew_ms"] for h in events(check.stdout)}
    run = spyglass(env, "run", "timedrift", "--drift", "5s", "-t", "all", "--json")
    assert run.returncode == 0, run.stderr
    matches = [e for e in events(run.stdout) if e["event"] == "match"]
    drift = {e["host"]: e["data"]["offset_ms"] for e in matches}
    assert sorted(drift) == sorted(skews) == ["lab-001", "lab-002"]
    for host, skew in skews.items():
        # The hello measures the skew with a round trip; timedrift's offset adds the action's
        # transit (signing included): both see the agent's clock, never the console's.
        assert OFF_MS - 1000 < skew < OFF_MS + 1000
        assert skew - 1000 < drift[host]
        assert all(e["data"]["drifted"] for e in matches)
