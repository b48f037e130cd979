"""End to end: the `spyglass` command against a real lab (real agents, gpg, SSH on loopback)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import asyncssh
import pytest
import tomli_w

from console.lab import Lab
from tests.conftest import LAB_SIZE, PLANTED, PLANTED_NAME


def spyglass(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "console.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_planted_file_found_on_exactly_the_planted_hosts(lab_env: dict[str, str]) -> None:
    done = spyglass(
        lab_env,
        "run",
        "file",
        "--paths",
        "/srv",
        "--name",
        f"^{PLANTED_NAME}$",
        "-t",
        "all",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    out = events(done.stdout)
    hosts = {e["host"]: e for e in out if e["event"] == "host"}
    planted = {f"lab-{i + 1:03d}" for i in PLANTED}
    assert {h for h, e in hosts.items() if e["status"] == "matched"} == planted
    assert {h for h, e in hosts.items() if e["status"] == "nomatch"} == set(hosts) - planted
    assert len(hosts) == LAB_SIZE
    matches = [e for e in out if e["event"] == "match"]
    assert {m["host"] for m in matches} == planted
    assert all(m["data"]["path"] == f"/srv/drop/{PLANTED_NAME}" for m in matches)
    summary = out[-1]
    assert summary["event"] == "summary"
    assert (summary["hosts"], summary["matched"], summary["failed"]) == (LAB_SIZE, 2, 0)


def test_name_nobody_has_exits_1(lab_env: dict[str, str]) -> None:
    done = spyglass(
        lab_env, "run", "file", "--paths", "/srv", "--name", "^no-such-file$", "-t", "all", "--json"
    )
    assert done.returncode == 1, done.stderr
    assert events(done.stdout)[-1]["nomatch"] == LAB_SIZE


def test_text_output_and_results_survive_the_console(lab_env: dict[str, str]) -> None:
    done = spyglass(
        lab_env,
        "run",
        "file",
        "--paths",
        "/srv",
        "--name",
        f"^{PLANTED_NAME}$",
        "-t",
        "role=db or role=worker",
    )
    assert done.returncode == 0, done.stderr
    assert f"/srv/drop/{PLANTED_NAME}" in done.stdout
    listing = spyglass(lab_env, "results", "list")
    run_id = listing.stdout.splitlines()[1].split("\t")[0]
    shown = spyglass(lab_env, "results", "show", run_id, "--json")
    stored = events(shown.stdout)
    assert {e["host"] for e in stored if e["event"] == "match"} == {"lab-002", "lab-004"}
    targeted = {e["host"] for e in stored if e["event"] == "host"}
    assert targeted == {"lab-002", "lab-004", "lab-006"}  # roles db, worker, db


def test_usage_errors_exit_2_with_one_line(lab_env: dict[str, str]) -> None:
    bad_regex = spyglass(lab_env, "run", "file", "--paths", "/srv", "--name", "([", "-t", "all")
    assert bad_regex.returncode == 2
    assert bad_regex.stderr.count("\n") == 1 and "name[0]" in bad_regex.stderr
    bad_target = spyglass(lab_env, "run", "file", "--paths", "/srv", "-t", "role in (web")
    assert bad_target.returncode == 2 and "column" in bad_target.stderr
    nobody = spyglass(lab_env, "run", "file", "--paths", "/srv", "-t", "role=mainframe")
    assert nobody.returncode == 2 and "matches no host" in nobody.stderr


def test_unreachable_and_hostkey_mismatch_do_not_stop_the_others(
    lab: Lab, lab_env: dict[str, str], tmp_path: Path
) -> None:
    import tomllib

    inventory = tomllib.loads(lab.inventory.read_text())
    inventory["defaults"]["known_hosts"] = str(tmp_path / "known_hosts")
    inventory["defaults"]["client_keys"] = [str(lab.dir / "console_ed25519")]
    inventory["defaults"]["connect_timeout"] = 2
    known = (lab.dir / "known_hosts").read_text().splitlines()
    wrong_key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    first_address = known[0].split()[0]
    known[0] = f"{first_address} {wrong_key}"
    (tmp_path / "known_hosts").write_text("\n".join(known) + "\n")
    inventory["hosts"].append(
        {"name": "gone", "address": "127.0.0.1", "port": _closed_port(), "tags": {"role": "web"}}
    )
    (tmp_path / "inv.toml").write_bytes(tomli_w.dumps(inventory).encode())
    audit = lab.host_dir("lab-001") / "audit.log"
    audit_before = audit.read_text() if audit.exists() else ""
    done = spyglass(
        {**lab_env, "SPYGLASS_INVENTORY": str(tmp_path / "inv.toml")},
        "run",
        "file",
        "--paths",
        "/srv",
        "--name",
        f"^{PLANTED_NAME}$",
        "-t",
        "all",
        "--json",
    )
    assert done.returncode == 3, done.stderr
    hosts = {e["host"]: e["status"] for e in events(done.stdout) if e["event"] == "host"}
    assert hosts["lab-001"] == "hostkey-mismatch"
    assert hosts["gone"] == "unreachable"
    assert hosts["lab-002"] == hosts["lab-004"] == "matched"
    assert (audit.read_text() if audit.exists() else "") == audit_before  # nothing reached it


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("command", [["modules", "list"], ["modules", "show", "file", "--json"]])
def test_module_commands(lab_env: dict[str, str], command: list[str]) -> None:
    done = spyglass(lab_env, *command)
    assert done.returncode == 0 and "file" in done.stdout
