"""The `spyglass` command in scripts, against the real lab: closed pipes, Ctrl-C, `results diff`
statuses, flags from files, suggestions, unknown tags, one-line refusals before anything is sent.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from console.lab.local import Lab
from modules.registry import all_modules
from protocol.action import Operation, make_action
from protocol.envelope import Envelope
from protocol.signing import Signer
from tests.support.cli import SPYGLASS, console_env, events, lab_inventory, save_inventory, spyglass
from tests.support.lab import LAB_SIZE, PLANTED, PLANTED_NAME

FIND_PLANTED = ("run", "file", "--paths", "/srv", "--name", f"^{PLANTED_NAME}$", "-t", "all")
PLANTED_HOSTS = {f"lab-{i + 1:03d}" for i in PLANTED}


def _closed_stdout(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    """Run `spyglass ARGS` with stdout a pipe whose reader is already gone."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [*SPYGLASS, *args], env=env, stdout=write, stderr=subprocess.PIPE, timeout=120
        )
    finally:
        os.close(write)


def test_a_closed_pipe_ends_quietly_with_the_shells_status(lab_env: dict[str, str]) -> None:
    assert spyglass(lab_env, *FIND_PLANTED).returncode == 0
    for args in (("results", "list"), ("results", "show", "last"), (*FIND_PLANTED, "--json")):
        done = _closed_stdout(lab_env, *args)
        assert (done.returncode, done.stderr) == (141, b""), args


def test_head_1_of_a_run_stops_it_and_stores_every_host_with_a_summary(
    lab_env: dict[str, str],
) -> None:
    """`run --json | head -1`: the reader leaves after the first line; the run ends quietly
    (141), and the store holds every host with a status and the run's summary."""
    proc = subprocess.Popen(
        [*SPYGLASS, *FIND_PLANTED, "--json"],
        env=lab_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = json.loads(proc.stdout.readline())
    proc.stdout.close()
    assert proc.wait(timeout=120) == 141
    assert b"Traceback" not in proc.stderr.read()
    shown = events(spyglass(lab_env, "results", "show", first["action_id"], "--json").stdout)
    assert shown[0] == first and shown[-1]["event"] == "summary"
    assert len([e for e in shown if e["event"] == "host"]) == shown[-1]["hosts"] == LAB_SIZE


class _Silent:
    """A TCP server that accepts and never says a word: its host stays in flight."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def test_ctrl_c_cancels_the_hosts_in_flight_and_stores_the_run(lab: Lab, tmp_path: Path) -> None:
    silent = _Silent()
    known = (lab.dir / "known_hosts").read_text()
    inventory = lab_inventory(lab, tmp_path, known)
    inventory["defaults"]["connect_timeout"] = 120
    inventory["hosts"].append(
        {"name": "silent", "address": "127.0.0.1", "port": silent.port, "tags": {"role": "web"}}
    )
    env = console_env(lab, save_inventory(inventory, tmp_path), tmp_path / "r.db")
    proc = subprocess.Popen(
        [*SPYGLASS, *FIND_PLANTED, "--json"], env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    try:
        printed = [json.loads(proc.stdout.readline())]
        while len([e for e in printed if e["event"] == "host"]) < LAB_SIZE:
            printed.append(json.loads(proc.stdout.readline()))
        proc.send_signal(signal.SIGINT)  # every lab host answered, "silent" is in flight
        printed += events(proc.stdout.read())
        assert proc.wait(timeout=60) == 130
    finally:
        proc.kill()
        silent.close()
    summary = printed[-1]
    assert summary["event"] == "summary" and summary["hosts"] == LAB_SIZE + 1
    shown = events(spyglass(env, "results", "show", summary["action_id"], "--json").stdout)
    hosts = {e["host"]: e["status"] for e in shown if e["event"] == "host"}
    assert len(hosts) == LAB_SIZE + 1 and hosts["silent"] == "cancelled"
    assert {h for h, s in hosts.items() if s == "matched"} == PLANTED_HOSTS
    assert shown[-1]["event"] == "summary" and shown[-1]["failed"] == 1
    listed = spyglass(env, "results", "list").stdout.splitlines()
    header, row = listed[0].split("\t"), listed[1].split("\t")
    assert row[header.index("state")] == "cancelled"


def test_results_diff_exit_statuses(lab_env: dict[str, str]) -> None:
    ids = []
    for args in (FIND_PLANTED, FIND_PLANTED, ("run", "file", "--paths", "/srv", "-t", "all")):
        ran = spyglass(lab_env, *args, "--json")
        ids.append(events(ran.stdout)[-1]["action_id"])
    ids.append(
        events(spyglass(lab_env, "run", "agent", "-t", "all", "--json").stdout)[0]["action_id"]
    )
    same = spyglass(lab_env, "results", "diff", ids[0], ids[1], "--json")
    assert same.returncode == 0 and json.loads(same.stdout)["changed"] is False
    differ = spyglass(lab_env, "results", "diff", ids[0], ids[2], "--json")
    assert differ.returncode == 1, differ.stderr
    added = json.loads(differ.stdout)["added"]
    assert any(PLANTED_NAME not in row["data"]["path"] for row in added)
    assert spyglass(lab_env, "results", "diff", ids[0], ids[2]).returncode == 1
    other = spyglass(lab_env, "results", "diff", ids[0], ids[3])
    assert other.returncode == 2 and "different modules" in other.stderr


def test_repeatable_flags_from_a_file(lab_env: dict[str, str], tmp_path: Path) -> None:
    listed = tmp_path / "paths.txt"
    listed.write_text("/etc\n\n/srv\n" + "".join(f"/nowhere/{i}\n" for i in range(5000)))
    names = tmp_path / "names.txt"
    names.write_text(f"^{PLANTED_NAME}$\n")
    ran = spyglass(
        lab_env, "run", "file", "--paths-from", str(listed), "--name-from", str(names), "-t",
        "all", "--json",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    found = {e["host"] for e in events(ran.stdout) if e["event"] == "match"}
    assert found == PLANTED_HOSTS
    assert "/srv" in events(ran.stdout)[0]["params"]


def test_one_line_answers_to_typos(lab_env: dict[str, str]) -> None:
    typo = spyglass(lab_env, "run", "file", "--paths", "/srv", "--nmae", "x", "-t", "all")
    assert typo.returncode == 2 and "did you mean --name?" in typo.stderr
    tag = spyglass(lab_env, "run", "agent", "-t", "rol=web")
    assert tag.returncode == 2
    assert "no host of" in tag.stderr and "tag 'rol'" in tag.stderr
    assert "known tags: address, env, name" in tag.stderr
    one = spyglass(lab_env, "run", "agent", "-t", "name=lab-001")
    assert one.returncode == 0 and "1 host: 1 matched" in one.stderr


def test_modules_list_json_is_every_declaration() -> None:
    listed = spyglass(dict(os.environ), "modules", "list", "--json")
    assert json.loads(listed.stdout) == [module.spec() for module in all_modules()]


# -- refused before anything is sent ----------------------------------------------------------


def _audit_logs(lab: Lab) -> dict[str, bytes]:
    return {path.parent.name: path.read_bytes() for path in (lab.dir / "hosts").glob("*/audit.log")}


def _envelope(lab: Lab, path: Path, *, now: int, expire: int = 300) -> Path:
    action = make_action("n", "all", [Operation("agent", {})], expire_seconds=expire, now=now)
    Signer(lab.gnupghome).sign(Envelope(action)).save(path)
    return path


def test_what_every_agent_would_refuse_is_never_sent(
    lab: Lab, lab_env: dict[str, str], tmp_path: Path
) -> None:
    now = int(time.time())
    refusals = {
        "expired": ("action", "launch", str(_envelope(lab, tmp_path / "old.json", now=now - 900))),
        "not-yet-valid": (
            "action", "launch", str(_envelope(lab, tmp_path / "new.json", now=now + 900))
        ),
        "lifetime 30 d exceeds": ("run", "agent", "-t", "all", "--expire", "30d"),
        "no rule": ("run", "yara", "--rules", "// only a comment", "--paths", "/srv", "-t", "all"),
        "rules: must not be empty": ("run", "yara", "--rules", "", "--paths", "/srv", "-t", "all"),
        "paths: missing": ("run", "file", "-t", "all"),
    }  # fmt: skip
    assert spyglass(lab_env, "run", "agent", "-t", "all").returncode == 0
    before = _audit_logs(lab)
    assert len(before) == LAB_SIZE and all(before.values())  # logs that a sent action grows
    for why, args in refusals.items():
        done = spyglass(lab_env, *args)
        assert done.returncode == 2, (why, done.stderr)
        assert why in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr
        assert done.stdout == ""
    assert _audit_logs(lab) == before


def test_no_help_text_cites_the_design_document() -> None:
    """`--help` of every command and subcommand speaks for itself."""
    import argparse

    from console.cli.main import build_parser

    parsers, seen = [build_parser()], 0
    while parsers:
        parser = parsers.pop()
        assert "DESIGN" not in parser.format_help(), parser.prog
        seen += 1
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers += action.choices.values()
    assert seen > 20
