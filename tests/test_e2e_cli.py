"""End to end: the `spyglass` command against a real lab (real agents, gpg, SSH on loopback)."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.lab.local import Lab
from tests.support.cli import (
    events,
    gone_host,
    known_hosts_with_wrong_key,
    lab_inventory,
    save_inventory,
    spyglass,
)
from tests.support.lab import LAB_SIZE, PLANTED, PLANTED_NAME

#: `spyglass run` arguments that find the planted file (add -t TARGET and output flags).
FIND_PLANTED = ("run", "file", "--paths", "/srv", "--name", f"^{PLANTED_NAME}$")


def test_planted_file_found_on_exactly_the_planted_hosts(lab_env: dict[str, str]) -> None:
    done = spyglass(lab_env, *FIND_PLANTED, "-t", "all", "--json")
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
    done = spyglass(lab_env, *FIND_PLANTED, "-t", "role=db or role=worker")
    assert done.returncode == 0, done.stderr
    assert f"/srv/drop/{PLANTED_NAME}" in done.stdout
    listing = spyglass(lab_env, "results", "list")
    run_id = listing.stdout.splitlines()[1].split("\t")[0]
    shown = spyglass(lab_env, "results", "show", run_id, "--json")
    stored = events(shown.stdout)
    assert {e["host"] for e in stored if e["event"] == "match"} == {"lab-002", "lab-004"}
    targeted = {e["host"] for e in stored if e["event"] == "host"}
    assert targeted == {"lab-002", "lab-004", "lab-006"}  # roles db, worker, db


def test_results_show_prints_the_host_table_of_the_live_run(lab_env: dict[str, str]) -> None:
    """`results show` and the end of `run --show all` print the same host table, elapsed_ms
    included: both are lines of the same HostResult records."""
    done = spyglass(lab_env, *FIND_PLANTED, "-t", "all", "--show", "all")
    assert done.returncode == 0, done.stderr
    live = done.stdout[done.stdout.index("\nhost\tstatus") + 1 :].splitlines()
    run_id = spyglass(lab_env, "results", "list").stdout.splitlines()[1].split("\t")[0]
    shown = spyglass(lab_env, "results", "show", run_id).stdout
    stored = shown[shown.index("\nhost\tstatus") + 1 :].splitlines()
    assert live[0] == stored[0] == "host\tstatus\tmatches\telapsed_ms\tdetail"
    assert sorted(live[1:]) == sorted(stored[1:]) and len(stored) == LAB_SIZE + 1
    assert all(int(line.split("\t")[3]) > 0 for line in stored[1:])


def test_a_parameter_error_names_its_module_once(lab_env: dict[str, str]) -> None:
    """`file: paths[0]: ...`, not `file: file: paths[0]: ...`: the message is built once."""
    done = spyglass(lab_env, "run", "file", "--paths", "relative", "--name", "x", "-t", "all")
    assert done.returncode == 2
    assert done.stderr == "spyglass: file: paths[0]: must be an absolute path: 'relative'\n"


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
    inventory = lab_inventory(lab, tmp_path, known_hosts_with_wrong_key(lab, 0)[0])
    inventory["hosts"].append(gone_host())
    env = {**lab_env, "SPYGLASS_INVENTORY": str(save_inventory(inventory, tmp_path))}
    audit = lab.host_dir("lab-001") / "audit.log"
    audit_before = audit.read_text() if audit.exists() else ""
    done = spyglass(env, *FIND_PLANTED, "-t", "all", "--json")
    assert done.returncode == 3, done.stderr
    hosts = {e["host"]: e["status"] for e in events(done.stdout) if e["event"] == "host"}
    assert hosts["lab-001"] == "hostkey-mismatch"
    assert hosts["gone"] == "unreachable"
    assert hosts["lab-002"] == hosts["lab-004"] == "matched"
    assert (audit.read_text() if audit.exists() else "") == audit_before  # nothing reached it


@pytest.mark.parametrize("command", [["modules", "list"], ["modules", "show", "file", "--json"]])
def test_module_commands(lab_env: dict[str, str], command: list[str]) -> None:
    done = spyglass(lab_env, *command)
    assert done.returncode == 0 and "file" in done.stdout
