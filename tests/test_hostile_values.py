"""A hostile agent's values at the console's boundary (issue 11.3).

One scripted agent among honest ones sends, between honest rows, one row holding a value the
console's readers cannot take: an integer of 2^64 (past SQLite's 64 bits), a list nested 960
deep (past Python's recursion in a printer), NaN or Infinity (not JSON). Through the real
`spyglass` command over real SSH: the run ends normally (exit 3, no traceback), the hostile row is
dropped and counted, that host ends `error` with the reason, every honest row of every host is
printed and stored, `--json` and `results show --json` stay strict JSON, and the run is marked
finished.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import SPYGLASS
from tests.support.liar import Fleet, Liar, lying_fleet

BAD_VALUES = {
    "int-2^64": str(2**64),
    "nested-960": "[" * 960 + "]" * 960,
    "nan": "NaN",
    "infinity": "-Infinity",
}
REASONS = {
    "int-2^64": "an integer outside 64 bits",
    "nested-960": "values nested deeper than",
    "nan": "a NaN or infinite number",
    "infinity": "a NaN or infinite number",
}


@dataclass
class Hostile(Liar):
    """Honest rows, and after the first of them one row whose ``size`` is ``value`` (raw JSON)."""

    value: str = "0"

    def frames(self, action_id: str) -> list[bytes]:
        honest = super().frames(action_id)
        body = (
            '{"type":"match","op":0,"data":{"path":"/hostile","size":' + self.value + ","
            '"mode":"-rw-r--r--","mtime":0,"matched":["name"]}}'
        ).encode()
        hostile = len(body).to_bytes(4, "big") + body  # a frame: 4-byte length, then the body
        return [honest[0], hostile, *honest[1:]]


@pytest.fixture
def gnupghome(lab: Any) -> Path:
    """A key to sign with (the CLI signs before launching; the liars do not care)."""
    return Path(lab.gnupghome)


def strict_json(line: str) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(line, parse_constant=refuse)


async def cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *SPYGLASS, *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 100)
    assert proc.returncode is not None
    return proc.returncode, out.decode("utf-8"), err.decode("utf-8")


def finished(fleet: Fleet) -> list[Any]:
    db = sqlite3.connect(fleet.store)
    try:
        return [row[0] for row in db.execute("SELECT finished FROM runs")]
    finally:
        db.close()


@pytest.mark.parametrize("kind", sorted(BAD_VALUES))
async def test_a_hostile_value_costs_only_its_row_and_its_host(kind: str, gnupghome: Path) -> None:
    liars = {"honest-1": Liar(rows=3), "hostile": Hostile(rows=2, value=BAD_VALUES[kind])}
    liars["honest-2"] = Liar(rows=4)
    async with lying_fleet(liars, over_ssh=True) as fleet:
        env = {
            **os.environ,
            "GNUPGHOME": str(gnupghome),
            "SPYGLASS_INVENTORY": str(fleet.inventory),
            "SPYGLASS_STORE": str(fleet.store),
        }
        run = ("run", "file", "--paths", "/", "--name", ".", "-t", "all")
        code, text, err = await cli(env, *run, "--show", "all")
        assert code == 3 and "Traceback" not in err, err
        rows = [line.split("\t")[0] for line in text.split("\n\n")[0].splitlines()[1:]]
        assert sorted(rows) == ["honest-1"] * 3 + ["honest-2"] * 4 + ["hostile"] * 2
        assert "/hostile" not in text
        hosts = {line.split("\t")[0]: line for line in text.split("\n\n")[1].splitlines()[1:]}
        assert hosts["hostile"].split("\t")[1] == "error" and REASONS[kind] in hosts["hostile"]
        assert [hosts[h].split("\t")[1] for h in ("honest-1", "honest-2")] == ["matched"] * 2

        code, out, err = await cli(env, *run, "--json")
        assert code == 3 and "Traceback" not in err, err
        lines = [strict_json(line) for line in out.splitlines()]
        matches = [e for e in lines if e["event"] == "match"]
        assert len(matches) == 9 and all(m["data"]["path"] != "/hostile" for m in matches)
        status = {e["host"]: e for e in lines if e["event"] == "host"}
        assert status["hostile"]["status"] == "error"
        assert REASONS[kind] in status["hostile"]["detail"]
        assert (status["honest-1"]["matches"], status["honest-2"]["matches"]) == (3, 4)
        run_id = lines[-1]["action_id"]

        code, shown, err = await cli(env, "results", "show", run_id)
        assert code == 0 and "Traceback" not in err and "/hostile" not in shown, err
        code, shown, err = await cli(env, "results", "show", run_id, "--json")
        assert code == 0, err
        stored = [strict_json(line) for line in shown.splitlines()]
        assert [e for e in stored if e["event"] == "match"] == matches
        assert all(when is not None for when in finished(fleet))


@pytest.mark.parametrize("kind", ["int-2^64", "nested-960"])
async def test_a_hostile_value_costs_the_tui_only_its_row_and_its_host(
    kind: str, gnupghome: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same fleet through the TUI: the run ends, the hostile host shows ``error`` with the
    reason, every honest host's rows are in the matches table and the hostile one is not. (Under
    the TUI's deeper call stack the 960-deep frame may already fail to decode: the frame is then
    refused as a whole, which ends that host's channel, and the host's later rows with it.)"""
    from tui.app import SpyglassApp
    from tui.model.session import Session
    from tui.screens.compose import ComposeScreen
    from tui.screens.confirm import ConfirmLaunch

    monkeypatch.setenv("GNUPGHOME", str(gnupghome))
    liars = {"honest-1": Liar(rows=3), "hostile": Hostile(rows=2, value=BAD_VALUES[kind])}
    liars["honest-2"] = Liar(rows=4)
    async with lying_fleet(liars, over_ssh=True) as fleet:
        app = SpyglassApp(Session(str(fleet.inventory), fleet.store))
        async with app.run_test(size=(160, 48)) as pilot:
            await until(lambda: isinstance(app.screen, ComposeScreen), pilot)
            await pilot.press(*"/", "tab", *".")
            await pilot.press("ctrl+l")
            await until(lambda: isinstance(app.screen, ConfirmLaunch), pilot)
            await pilot.press("y")
            await until(lambda: app.current is not None and app.current.finished, pilot)
            await until(lambda: not app.current.pending, pilot)
            hosts = {r.cells[0]: r.cells for r in app.current.host_model.rows}
            assert hosts["hostile"][1] == "error"
            reason = " ".join(map(str, hosts["hostile"]))
            assert REASONS[kind] in reason or "frame is not UTF-8 JSON" in reason
            assert [hosts[h][1] for h in ("honest-1", "honest-2")] == ["matched"] * 2
            rows = sorted(e[0][0] for e in app.current.match_model.entries)
            assert rows.count("honest-1") == 3 and rows.count("honest-2") == 4
            assert 1 <= rows.count("hostile") <= 2
            assert "/hostile" not in app.export_screenshot()


async def until(done: Any, pilot: Any, timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not done():
        assert loop.time() < deadline, "condition not reached in time"
        await pilot.pause(0.05)
