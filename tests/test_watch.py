"""Watchers (issue 18 point 4): a real agent process, real inotify, real files, signed actions.

A watcher needs two approvers by default, sees a planted web shell and streams its alert, keeps
alerting after the agent restarts, stops at a signed cancel and at its expiry, and under a burst
of 10,000 changed files loses none below its bound and counts what it dropped above it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from protocol.action import Operation, make_action
from protocol.envelope import Envelope
from protocol.frames import read_frame
from protocol.signing import Signer, generate_key
from tests.support import agents, cli
from tests.support.paths import kill_gpg_agent, short_tmp

#: A uid for the agent when this one has no inotify instance left (the per-user limit,
#: fs.inotify.max_user_instances, is shared with every gpg-agent other test runs left behind).
SPARE_UID = 4242
WEBSHELL = b"<?php eval(base64_decode($_POST['x'])); ?>\n"
#: How long the alert of a planted file may take to reach a following console.
ALERT_DEADLINE = 1.0
BURST = 10_000


@pytest.fixture(scope="module")
def homes() -> Iterator[tuple[Path, Path]]:
    """Alice's and Bob's GNUPGHOMEs."""
    alice, bob = short_tmp("g"), short_tmp("g")
    for home, name in ((alice, "Alice"), (bob, "Bob")):
        generate_key(home, name=name, email=f"{name.lower()}@spyglass.invalid")
    yield alice, bob
    for home in (alice, bob):
        kill_gpg_agent(home)


@pytest.fixture(scope="module")
def signers(homes: tuple[Path, Path]) -> tuple[Signer, Signer]:
    return Signer(homes[0]), Signer(homes[1])


def _inotify_left() -> bool:
    from inotify_simple import INotify

    try:
        INotify().close()
    except OSError:
        return False
    return True


def agent_prefix(directory: Path) -> tuple[str, ...]:
    """Run the agent as this user, or as a spare one when this one has no inotify instance
    left and may switch (root); else skip, saying why."""
    if _inotify_left():
        return ()
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("no inotify instance left for this user (fs.inotify.max_user_instances)")
    for path in [directory, *directory.rglob("*")]:
        os.chown(path, SPARE_UID, SPARE_UID, follow_symlinks=False)
    # It keeps the right to read and traverse (the interpreter may live in root's home).
    caps = ("--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search")
    return ("setpriv", f"--reuid={SPARE_UID}", f"--regid={SPARE_UID}", "--clear-groups", *caps)


def restart(agent: agents.AgentProc) -> agents.AgentProc:
    agents.stop_agent(agent)
    return agents.start_agent(agent.dir, prefix=agent_prefix(agent.dir))


@pytest.fixture
def agent(signers: tuple[Signer, Signer]) -> Iterator[agents.AgentProc]:
    directory = short_tmp("wa")
    alice, bob = signers
    agents.write_agent(
        directory,
        investigators={"alice": alice.export_public(), "bob": bob.export_public()},
        acl={
            "default": {
                "minimum_weight": 1,
                "investigators": {alice.fingerprint: 1, bob.fingerprint: 1},
            }
        },
        limits={"match_limit": 100_000},
    )
    for sub in ("www/uploads", "burst", "canary"):
        (directory / "root" / "srv" / sub).mkdir(parents=True)
    started = agents.start_agent(directory, prefix=agent_prefix(directory))
    yield started
    agents.stop_agent(started)


def signed(by: list[Signer], module: str, params: dict[str, Any], expire: int = 300) -> Any:
    envelope = Envelope(
        make_action("watch", "all", [Operation(module, params)], expire_seconds=expire)
    )
    for signer in by:
        envelope = signer.sign(envelope)
    return envelope.to_dict()


def rows(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f["data"] for f in frames if f["type"] == "match"]


async def arm(
    agent: agents.AgentProc, by: list[Signer], params: dict[str, Any], expire: int = 300
) -> Any:
    env = signed(by, "fswatch", {"name": ["\\.php$"], **params}, expire)
    frames = await agents.converse(agent, agents.run_frames(env))
    assert frames[-1]["type"] == "finished", frames
    [row] = rows(frames)
    assert row["status"] == "armed" and row["watcher"] == env["action"]["id"]
    return env


async def watchers(agent: agents.AgentProc, signer: Signer) -> dict[str, dict[str, Any]]:
    frames = await agents.converse(agent, agents.run_frames(signed([signer], "fswatch_list", {})))
    return {row["watcher"]: row for row in rows(frames)}


async def alerts(agent: agents.AgentProc, signer: Signer, watcher: str) -> list[dict[str, Any]]:
    params = {"watcher": watcher}
    return rows(
        await agents.converse(agent, agents.run_frames(signed([signer], "fswatch_alerts", params)))
    )


class Follower:
    """A console following the alerts on its own channel."""

    def __init__(self, agent: agents.AgentProc, signer: Signer, since: int) -> None:
        self.agent, self.signer, self.since = agent, signer, since

    async def __aenter__(self) -> Follower:
        self.conn = await agents.connect(self.agent)
        self.process = await self.conn.create_process(subsystem="spyglass", encoding=None)
        env = signed([self.signer], "fswatch_alerts", {"follow": True, "since": self.since})
        self.process.stdin.write(agents.run_frames(env))
        return self

    async def next_alert(self) -> dict[str, Any]:
        while (frame := await read_frame(self.process.stdout)) is not None:
            if frame["type"] == "match":
                return dict(frame["data"])
        raise AssertionError("the channel ended without an alert")

    async def __aexit__(self, *_: Any) -> None:
        self.process.close()
        self.conn.close()


def plant(agent: agents.AgentProc, shown: str, data: bytes = WEBSHELL) -> None:
    (agent.dir / "root" / shown.lstrip("/")).write_bytes(data)


async def test_one_approver_is_refused_two_arm_it(
    agent: agents.AgentProc, signers: tuple[Signer, Signer]
) -> None:
    alice, bob = signers
    refused = await agents.converse(
        agent, agents.run_frames(signed([alice], "fswatch", {"paths": ["/srv"]}))
    )
    assert refused[-1]["type"] == "rejected" and refused[-1]["reason"] == "acl"
    assert "'fswatch' needs weight 2, signers have 1" in refused[-1]["detail"]
    env = await arm(agent, [alice, bob], {"paths": ["/srv/www"], "recursive": True})
    listed = await watchers(agent, alice)
    assert listed[env["action"]["id"]]["watches"] == 2  # /srv/www and its uploads folder
    assert sorted(listed[env["action"]["id"]]["signers"]) == sorted(
        [alice.fingerprint, bob.fingerprint]
    )


async def test_webshell_alert_streams_survives_restart_and_stops_at_cancel(
    agent: agents.AgentProc, signers: tuple[Signer, Signer]
) -> None:
    alice, bob = signers
    env = await arm(agent, [alice, bob], {"paths": ["/srv/www"], "recursive": True})
    watcher = env["action"]["id"]
    async with Follower(agent, alice, since=0) as follower:
        plant(agent, "/srv/www/uploads/shell.php")
        async with asyncio.timeout(ALERT_DEADLINE):
            alert = await follower.next_alert()
    assert alert["path"] == "/srv/www/uploads/shell.php" and alert["matched"] == ["name"]
    assert alert["watcher"] == watcher and alert["digest"] and alert["seq"] == 1

    agent = restart(agent)
    try:
        assert (await watchers(agent, alice))[watcher]["status"] == "re-armed"
        async with Follower(agent, alice, since=1) as follower:
            plant(agent, "/srv/www/uploads/again.php")
            async with asyncio.timeout(ALERT_DEADLINE):
                alert = await follower.next_alert()
        assert alert["path"] == "/srv/www/uploads/again.php" and alert["watcher"] == watcher

        cancel = signed([alice], "fswatch_cancel", {"watcher": watcher})
        assert [
            r["status"] for r in rows(await agents.converse(agent, agents.run_frames(cancel)))
        ] == ["cancelled"]
        assert watcher not in await watchers(agent, alice)
        plant(agent, "/srv/www/uploads/after-cancel.php")
        stored = [a["path"] for a in await alerts(agent, alice, watcher)]
        assert stored == ["/srv/www/uploads/shell.php", "/srv/www/uploads/again.php"]
    finally:
        agents.stop_agent(agent)


async def wait_for(
    agent: agents.AgentProc, signer: Signer, watcher: str, done: Any, deadline: float = 60
) -> dict[str, Any] | None:
    """Poll the watcher's row until ``done(row)`` (row None once it is gone)."""
    async with asyncio.timeout(deadline):
        while True:
            row = (await watchers(agent, signer)).get(watcher)
            if done(row):
                return row
            await asyncio.sleep(0.2)


async def test_a_watcher_stops_at_its_expiry(
    agent: agents.AgentProc, signers: tuple[Signer, Signer]
) -> None:
    alice, bob = signers
    short = await arm(agent, [alice, bob], {"paths": ["/srv/canary"]}, expire=2)
    lasting = await arm(agent, [alice, bob], {"paths": ["/srv/www/uploads"]})
    await wait_for(agent, alice, short["action"]["id"], lambda row: row is None)
    plant(agent, "/srv/canary/late.php")
    plant(agent, "/srv/www/uploads/live.php")
    await wait_for(agent, alice, lasting["action"]["id"], lambda row: row["alerts"] == 1)
    assert await alerts(agent, alice, short["action"]["id"]) == []
    assert [a["path"] for a in await alerts(agent, alice, lasting["action"]["id"])] == [
        "/srv/www/uploads/live.php"
    ]


def burst(directory: Path, count: int) -> None:
    for i in range(count):
        fd = os.open(directory / f"{i:05d}.php", os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, b"<?php\n")
        os.close(fd)


@pytest.mark.parametrize(("max_pending", "lossless"), [(20_000, True), (100, False)])
async def test_a_burst_of_changed_files_is_matched_or_counted_dropped(
    agent: agents.AgentProc, signers: tuple[Signer, Signer], max_pending: int, lossless: bool
) -> None:
    """10,000 new files: below the bound every one alerts; above it (100 waiting paths) the
    watcher counts what it dropped, and alerts plus dropped account for every file."""
    alice, bob = signers
    env = await arm(agent, [alice, bob], {"paths": ["/srv/burst"], "max_pending": max_pending})
    watcher = env["action"]["id"]
    await asyncio.to_thread(burst, agent.dir / "root" / "srv" / "burst", BURST)
    row = await wait_for(
        agent, alice, watcher, lambda row: row["alerts"] + row["dropped"] >= BURST, deadline=120
    )
    assert row is not None and row["events"] == BURST
    assert row["alerts"] + row["dropped"] == BURST
    stored = await alerts(agent, alice, watcher)
    assert len(stored) == row["alerts"]
    assert len({a["path"] for a in stored}) == row["alerts"]  # each file once
    if lossless:
        assert row["dropped"] == 0
    else:
        assert row["dropped"] > 0


def inventory(agent: agents.AgentProc, where: Path) -> Path:
    """An inventory of the one agent, its host key pinned."""
    public = agent.host_key.export_public_key().decode().strip()
    (where / "known_hosts").write_text(f"[{agent.host}]:{agent.port} {public}\n")
    host = {"name": "web-1", "address": agent.host, "port": agent.port, "tags": {"role": "web"}}
    defaults = {
        "known_hosts": str(where / "known_hosts"),
        "client_keys": [str(agent.dir / "console_key")],
        "connect_timeout": 5,
    }
    path = where / "inventory.toml"
    path.write_bytes(tomli_w.dumps({"defaults": defaults, "hosts": [host]}).encode())
    return path


async def test_the_command_line_arms_with_two_approvers_reads_lists_and_cancels(
    agent: agents.AgentProc, homes: tuple[Path, Path], tmp_path: Path
) -> None:
    """`spyglass run fswatch --sign-only`, a second `action sign`, `action launch`, then
    `spyglass alerts`, `watchers list` and `watchers cancel`, as the README shows them."""
    env = {
        **os.environ,
        "SPYGLASS_INVENTORY": str(inventory(agent, tmp_path)),
        "SPYGLASS_STORE": str(tmp_path / "results.db"),
    }
    alice, bob = ({**env, "GNUPGHOME": str(home)} for home in homes)

    async def spyglass(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(cli.spyglass, env, *args)

    action = tmp_path / "watch.json"
    arm = ["run", "fswatch", "--paths", "/srv/www", "--recursive", "--name", "\\.php$"]
    done = await spyglass(alice, *arm, "--expire", "1h", "-t", "all", "--sign-only", str(action))
    assert done.returncode == 0, done.stderr
    assert (await spyglass(bob, "action", "sign", str(action))).returncode == 0
    launched = await spyglass(alice, "action", "launch", str(action), "--json")
    [armed] = [e["data"] for e in cli.events(launched.stdout) if e["event"] == "match"]
    assert armed["status"] == "armed", launched.stderr
    plant(agent, "/srv/www/uploads/cli.php")
    followed = await spyglass(alice, "alerts", "--follow", "--expire", "5s", "--json")
    [alert] = [e["data"] for e in cli.events(followed.stdout) if e["event"] == "match"]
    assert alert["path"] == "/srv/www/uploads/cli.php" and alert["watcher"] == armed["watcher"]
    listed = await spyglass(bob, "watchers", "list", "--json")
    assert [e["data"]["watcher"] for e in cli.events(listed.stdout) if e["event"] == "match"] == [
        armed["watcher"]
    ]
    cancelled = await spyglass(bob, "watchers", "cancel", armed["watcher"], "--json")
    rows = [e["data"] for e in cli.events(cancelled.stdout) if e["event"] == "match"]
    assert [r["status"] for r in rows] == ["cancelled"]
    listed = await spyglass(bob, "watchers", "list", "--json")
    assert listed.returncode == 1  # every host answered, none has a watcher


async def test_a_watcher_whose_signer_left_the_keyring_is_not_rearmed(
    agent: agents.AgentProc, signers: tuple[Signer, Signer]
) -> None:
    """At start a kept watcher is verified again, as a new request: with Bob's key gone from
    ``investigators/``, Alice alone no longer weighs the two fswatch needs."""
    alice, bob = signers
    env = await arm(agent, [alice, bob], {"paths": ["/srv/www"]})
    (agent.dir / "investigators" / "bob.asc").unlink()
    agent = restart(agent)
    try:
        assert env["action"]["id"] not in await watchers(agent, alice)
        [line] = [r for r in agent.audit if r["verdict"] == "watcher-not-rearmed"]
        assert line["action_id"] == env["action"]["id"] and "needs weight 2" in line["detail"]
        assert list((agent.dir / "state" / "watch" / "armed").glob("*.json")) == []
    finally:
        agents.stop_agent(agent)


async def test_ping_wants_two_approvers_without_a_rule_of_its_own(
    agent: agents.AgentProc, signers: tuple[Signer, Signer]
) -> None:
    """ping (outbound connections) has ``default_weight`` 2 like fswatch: with only
    ``[acl.default]``, one signer is refused and two are accepted."""
    alice, bob = signers
    params = {"address": "127.0.0.1", "port": [9], "count": 1}
    refused = await agents.converse(agent, agents.run_frames(signed([alice], "ping", params)))
    assert refused[-1]["type"] == "rejected" and refused[-1]["reason"] == "acl"
    assert "'ping' needs weight 2, signers have 1" in refused[-1]["detail"]
    accepted = await agents.converse(agent, agents.run_frames(signed([alice, bob], "ping", params)))
    assert accepted[0]["type"] == "accepted" and accepted[-1]["type"] == "finished"


WEBSHELL_RULE = 'rule php_webshell { strings: $a = "eval(base64_decode(" condition: $a }'


async def test_a_watcher_with_yara_rules_alerts_only_on_files_they_match(
    agent: agents.AgentProc, signers: tuple[Signer, Signer]
) -> None:
    """The rules are matched in the confined batch child after the file filters (here the
    name): an innocent .php file is seen and ignored, the web shell alerts naming the rule."""
    alice, bob = signers
    env = await arm(agent, [alice, bob], {"paths": ["/srv/www"], "rules": WEBSHELL_RULE})
    watcher = env["action"]["id"]
    async with Follower(agent, alice, since=0) as follower:
        plant(agent, "/srv/www/innocent.php", b"<?php echo 'hello'; ?>\n")
        plant(agent, "/srv/www/shell.php")
        async with asyncio.timeout(ALERT_DEADLINE * 5):
            alert = await follower.next_alert()
    assert (alert["path"], alert["rules"], alert["matched"]) == (
        "/srv/www/shell.php",
        ["php_webshell"],
        ["name"],
    )
    assert sorted(alert["signers"]) == sorted([alice.fingerprint, bob.fingerprint])
    assert [a["path"] for a in await alerts(agent, alice, watcher)] == ["/srv/www/shell.php"]
    row = (await watchers(agent, alice))[watcher]
    assert (row["events"], row["alerts"]) == (2, 1)


def test_a_broken_rule_is_a_one_line_parameter_error_before_signing(tmp_path: Path) -> None:
    """Checked by the console with the agents' own validation: nothing is signed (the empty
    GNUPGHOME has no key, which signing would have said) and nothing is sent."""
    (tmp_path / "g").mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(tmp_path / "g"), "SPYGLASS_STORE": str(tmp_path / "r.db")}
    broken = ["--rules", "rule broken { condition: $a }"]
    done = cli.spyglass(env, "run", "fswatch", "--paths", "/srv", *broken, "-t", "all")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        'spyglass: fswatch: rules: invalid yara rules: line 1: undefined string "$a"'
    ]
