"""Endpoint safety: a misbehaving operation is stopped by the agent's limits, reported with the
right ``done`` status, and the agent carries on. No test module is added to the product: real
modules are driven into pathological cases.

- memory: the pkg module reads dpkg's database whole (up to 256 MiB), and a 300 MB one (sparse:
  no disk spent) wants more than the child's RLIMIT_AS allows: a MemoryError;
- CPU: a YARA condition quadratic in the file size spins on a 4 MB file (the rule's own timeout
  is a minute), ended by RLIMIT_CPU (SIGXCPU). Regexes no longer can: RE2 runs them in linear
  time (``(a+)+$`` and friends are in tests/test_modules_regex.py);
- output: ``name: .`` over 5,000 files runs into the agent's match cap, or its result-bytes cap.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from console.lab.local import Lab
from protocol.action import Operation, make_action
from protocol.envelope import Envelope
from protocol.signing import Signer
from tests.support.agents import AgentProc, converse, run_frames, start_agent, stop_agent
from tests.support.solo_agent import assert_alive, assert_still_serves, hostile_agent_dir, signed

MEMORY_MB = 256
MATCH_CAP = 100
BYTES_CAP = 4000
FLOOD_FILES = 5000
DECOY = b"decoy:x:0:0:inside the root:/:/bin/false\n"
DECOY_SHA256 = hashlib.sha256(DECOY).hexdigest()
SLOW_RULE = (
    "rule quadratic { condition: for all i in (0..filesize - 1) : "
    "(for all j in (0..filesize - 1) : (uint8(i) != 0x100)) }"
)


def _populate(root: Path) -> None:
    srv = root / "srv"
    # the "c" closing the line gets past the rare-byte prefilter, so the regex must run on it
    (srv / "big.txt").write_bytes(b"a" * 4_000_000 + b"c\n")
    flood = srv / "flood"
    flood.mkdir()
    for i in range(FLOOD_FILES):
        (flood / f"f{i:05d}").touch()
    # Symlinks planted by an attacker, pointing out of the root.
    (srv / "etc").symlink_to("/etc")
    (srv / "passwd").symlink_to("/etc/passwd")
    (srv / "up").symlink_to("../../../../../../..")
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_bytes(DECOY)
    status = root / "var" / "lib" / "dpkg" / "status"
    status.parent.mkdir(parents=True)
    with status.open("wb") as f:
        f.truncate(300 << 20)


def _limited(lab: Lab, **limits: Any) -> AgentProc:
    directory = hostile_agent_dir(lab, **limits)
    _populate(directory / "root")
    return start_agent(directory)


@pytest.fixture(scope="module")
def agent(lab: Lab) -> Iterator[AgentProc]:
    started = _limited(lab, cpu_seconds=1, memory_mb=MEMORY_MB, match_limit=MATCH_CAP)
    yield started
    stop_agent(started)


@pytest.fixture(scope="module")
def signer(lab: Lab) -> Signer:
    return Signer(lab.gnupghome)


async def run(agent: AgentProc, signer: Signer, **params: Any) -> list[dict[str, Any]]:
    frames = await converse(agent, run_frames(signed(signer, **params)), timeout=60)
    assert frames[0]["type"] == "accepted" and frames[-1]["type"] == "finished", frames[-3:]
    return frames


def done_of(frames: list[dict[str, Any]]) -> dict[str, Any]:
    return next(f for f in frames if f["type"] == "done")


async def run_op(agent: AgentProc, signer: Signer, module: str, **params: Any) -> list[Any]:
    action = make_action("safety", "all", [Operation(module, params)])
    frames = await converse(agent, run_frames(signer.sign(Envelope(action)).to_dict()), timeout=60)
    assert frames[0]["type"] == "accepted" and frames[-1]["type"] == "finished", frames[-3:]
    return frames


async def test_unbounded_allocation_is_stopped_by_the_memory_rlimit(
    lab: Lab, signer: Signer
) -> None:
    # Its own agent: under a loaded machine, the shared agent's 1 s CPU limit may come first.
    roomy = _limited(lab, cpu_seconds=60, memory_mb=MEMORY_MB)
    try:
        frames = await run_op(roomy, signer, "pkg")
        done = done_of(frames)
        assert done["status"] == "error", done
        assert any(f"memory limit of {MEMORY_MB} MiB" in e for e in done["errors"]), done
        assert_alive(roomy)
        await assert_still_serves(roomy, signer)
    finally:
        stop_agent(roomy)


async def test_spinning_module_is_stopped_by_the_cpu_rlimit(
    agent: AgentProc, signer: Signer
) -> None:
    frames = await run_op(agent, signer, "yara", rules=SLOW_RULE, paths=["/srv"], name=["^big"])
    done = done_of(frames)
    assert done["status"] == "timeout"
    assert any("CPU limit of 1 s" in e for e in done["errors"]), done
    assert_alive(agent)
    await assert_still_serves(agent, signer)


async def test_match_flood_is_cut_by_the_agent_match_cap(agent: AgentProc, signer: Signer) -> None:
    frames = await run(agent, signer, name=["."], match_limit=1_000_000)
    done = done_of(frames)
    assert done["status"] == "limit"
    assert sum(f["type"] == "match" for f in frames) == MATCH_CAP
    assert_alive(agent)
    await assert_still_serves(agent, signer)


async def test_result_bytes_flood_is_cut_by_the_byte_cap(lab: Lab, signer: Signer) -> None:
    capped = _limited(lab, result_bytes=BYTES_CAP)
    try:
        frames = await run(capped, signer, name=["."], match_limit=1_000_000)
        done = done_of(frames)
        assert done["status"] == "limit"
        rows = [f["data"] for f in frames if f["type"] == "match"]
        assert 0 < len(rows) < FLOOD_FILES
        assert sum(len(str(r)) for r in rows) <= BYTES_CAP
        assert_alive(capped)
        # The cap is per action: the next action has a fresh budget.
        await assert_still_serves(capped, signer)
    finally:
        stop_agent(capped)


@pytest.mark.parametrize(
    "params",
    [
        {"paths": ["/srv"], "name": ["^passwd$"], "content": ["^root:"]},
        {"paths": ["/srv/etc"], "name": ["^passwd$"]},
        {"paths": ["/srv/passwd"]},
        {"paths": ["/srv/up/etc"], "name": ["^passwd$"]},
        {"paths": ["/../../../../etc/passwd"]},
    ],
    ids=["walk", "dir-link", "file-link", "dotdot-link", "dotdot-path"],
)
async def test_symlinks_never_lead_out_of_the_root(
    agent: AgentProc, signer: Signer, params: dict[str, Any]
) -> None:
    frames = await run(agent, signer, return_sha256=True, **params)
    rows = [f["data"] for f in frames if f["type"] == "match"]
    for row in rows:
        # A link met in a walk is reported as a link, never read through; a link in a requested
        # path resolves as if the root were "/", so it reaches the decoy inside the root.
        if row["mode"].startswith("l"):
            assert row["sha256"] is None, row
        else:
            assert row["sha256"] == DECOY_SHA256, row
    if "content" in params:  # the real /etc/passwd has a root: line; nothing matched it
        assert not rows
    else:
        assert any(r["sha256"] == DECOY_SHA256 for r in rows) or params["paths"] == ["/srv"]


async def test_pathological_yara_rule_is_stopped_by_the_agent_timeout(
    lab: Lab, signer: Signer
) -> None:
    """The rule's own per-target timeout is left at a minute: the agent's wall clock ends it."""
    slow = _limited(lab, module_timeout=2, cpu_seconds=120)
    try:
        action = make_action(
            "yara",
            "all",
            [Operation("yara", {"rules": SLOW_RULE, "paths": ["/srv"], "name": ["^big"]})],
        )
        frames = await converse(
            slow, run_frames(signer.sign(Envelope(action)).to_dict()), timeout=60
        )
        done = done_of(frames)
        assert done["status"] == "timeout" and frames[-1]["type"] == "finished"
        assert any("timeout" in e for e in done["errors"]), done
        assert_alive(slow)
        await assert_still_serves(slow, signer)
    finally:
        stop_agent(slow)
