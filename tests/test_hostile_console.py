"""A compromised agent lying to the console: it ignores its own match cap and floods rows.

The agent here is our own: it speaks the frame protocol (hello, accepted, matches, done,
finished) and sends as many matches as it is told, never checking the envelope. It is served on
the console's loopback transport, or (``over_ssh``, for the CLI) by a real asyncssh server on
127.0.0.1 port 0. The console must keep at most its own caps per host and per run,
store and show the same rows, keep the host's status and reported count honest, and say in the
host's detail that the console cap was reached.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from console.fanout.investigation import CAP_NOTE, MatchCaps
from console.results.store import Store
from protocol.errors import ConfigError
from tests.support.cli import SPYGLASS
from tests.support.liar import Fleet, Liar, investigate, lying_fleet


def stored(fleet: Fleet) -> tuple[dict[str, int], dict[str, Any]]:
    """Rows in the store per host, and the stored host records."""
    store = Store(fleet.store)
    try:
        run_id = fleet.envelope.action.id
        rows: dict[str, int] = {}
        for match in store.matches(run_id):
            rows[match["host"]] = rows.get(match["host"], 0) + 1
        return rows, {h["host"]: dict(h) for h in store.hosts(run_id)}
    finally:
        store.close()


# -- tests -----------------------------------------------------------------------------------
async def test_lying_agent_flood_is_cut_at_the_console_host_cap() -> None:
    liars = {"liar": Liar(rows=3000), "honest": Liar(rows=3)}
    async with lying_fleet(liars) as fleet:
        results, shown = await investigate(fleet, MatchCaps(host_rows=500))
    assert liars["liar"].seen_runs == [fleet.envelope.action.id]
    rows, hosts = stored(fleet)
    assert rows == {"liar": 500, "honest": 3}
    assert sum(1 for e in shown if e.host == "liar") == 500  # shown = stored, nothing more
    # The first rows are the ones kept, in the order the agent sent them.
    assert [e.data["path"] for e in shown if e.host == "liar"][:3] == ["/lie/0", "/lie/1", "/lie/2"]
    liar = hosts["liar"]
    assert (liar["status"], liar["matches"]) == ("matched", 3000)  # what the agent reported
    assert CAP_NOTE in liar["detail"] and "500 rows per host" in liar["detail"]
    assert results["liar"].detail == liar["detail"]
    assert hosts["honest"]["status"] == "matched" and hosts["honest"]["detail"] == ""


async def test_lying_agents_are_cut_at_the_console_run_cap() -> None:
    liars = {f"liar-{i}": Liar(rows=300) for i in range(3)}
    async with lying_fleet(liars) as fleet:
        _, shown = await investigate(fleet, MatchCaps(run_rows=700))
    rows, hosts = stored(fleet)
    assert sum(rows.values()) == len(shown) == 700
    capped = [h for h in hosts.values() if CAP_NOTE in h["detail"]]
    assert capped and all("700 rows per run" in h["detail"] for h in capped)
    assert all(h["status"] == "matched" and h["matches"] == 300 for h in hosts.values())


async def test_lying_agent_with_huge_rows_is_cut_at_the_console_byte_cap() -> None:
    liars = {"liar": Liar(rows=200, pad=50_000)}  # ~10 MB of rows
    async with lying_fleet(liars) as fleet:
        _, shown = await investigate(fleet, MatchCaps(host_bytes=1 << 20))
    rows, hosts = stored(fleet)
    # The row that crosses the cap is kept: at most one frame over it.
    assert rows == {"liar": len(shown)} and 20 <= len(shown) <= 22
    assert CAP_NOTE in hosts["liar"]["detail"] and "bytes per host" in hosts["liar"]["detail"]
    assert os.path.getsize(fleet.store) < 8 << 20


def test_caps_come_from_the_environment() -> None:
    assert MatchCaps.from_env({}) == MatchCaps()
    assert MatchCaps().host_rows == 100_000
    caps = MatchCaps.from_env({"SPYGLASS_HOST_MATCH_CAP": "7", "SPYGLASS_RUN_MATCH_BYTES": "9"})
    assert (caps.host_rows, caps.run_bytes) == (7, 9)
    for bad in ("0", "-1", "many"):
        with pytest.raises(ConfigError, match="SPYGLASS_RUN_MATCH_CAP"):
            MatchCaps.from_env({"SPYGLASS_RUN_MATCH_CAP": bad})


async def test_cli_cap_setting_reaches_the_json_output(lab_gnupghome: Path) -> None:
    """`spyglass run --json` with SPYGLASS_HOST_MATCH_CAP: the host line says what was cut."""
    liars = {"liar": Liar(rows=1000)}
    async with lying_fleet(liars, over_ssh=True) as fleet:
        env = {
            **os.environ,
            "GNUPGHOME": str(lab_gnupghome),
            "SPYGLASS_INVENTORY": str(fleet.inventory),
            "SPYGLASS_STORE": str(fleet.store),
            "SPYGLASS_HOST_MATCH_CAP": "10",
        }
        args = ("run", "file", "--paths", "/", "--name", ".", "-t", "all", "--json")
        proc = await asyncio.create_subprocess_exec(
            *SPYGLASS, *args, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 100)
    assert proc.returncode == 0, err.decode()
    lines = [json.loads(line) for line in out.decode("utf-8").splitlines()]
    assert sum(1 for e in lines if e["event"] == "match") == 10
    host = next(e for e in lines if e["event"] == "host")
    assert (host["status"], host["matches"]) == ("matched", 1000)
    assert f"{CAP_NOTE} (10 rows per host)" in host["detail"]


@pytest.fixture
def lab_gnupghome(lab: Any) -> Path:
    """A key to sign with (the CLI signs before launching; the liar does not care)."""
    return Path(lab.gnupghome)
