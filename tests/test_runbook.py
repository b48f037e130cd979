"""Runbooks: `runbook check` without connecting, `runbook run` against the real lab."""

from __future__ import annotations

import hashlib
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from console.lab.local import Lab
from console.lab.seed import BACKDOOR
from console.results.store import Store
from modules.registry import get_module
from tests.support.cli import gone_host, lab_inventory, save_inventory, spyglass
from tests.support.lab import LAB_SIZE, PLANTED, PLANTED_NAME

CONTRIB = Path(__file__).resolve().parent.parent / "contrib" / "runbooks"
BACKDOORED = "lab-005"  # console.seed.has_backdoor(4): xz 5.6.0 and liblzma.so.5.6.0


def write(tmp_path: Path, text: str, name: str = "runbook.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def step_table(
    name: str, target: str | None, params: dict[str, Any], module: str = "file", **more: Any
) -> dict[str, Any]:
    """One ``[[steps]]`` table; with no ``target`` the step takes the runbook's."""
    table = {"name": name, "module": module, "params": params, **more}
    return table if target is None else {**table, "target": target}


def runbook(tmp_path: Path, *steps: dict[str, Any], **top: Any) -> str:
    """The path of a runbook named ``runbook`` (its file's name) with ``steps`` and ``top``'s
    keys."""
    return str(write(tmp_path, tomli_w.dumps({**top, "steps": list(steps)})))


def run_runbook(env: dict[str, str], path: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return spyglass(env, "runbook", "run", path, *flags)


# -- check -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '[[steps]]\nname = "find"\ntarget = "all"\nmodule = "file"\n'
            'params = { paths = ["/srv"] }\n'
            '[[steps]]\nname = "dig"\ntarget = "all"\nmodule = "file"\n'
            'params = { paths = ["/srv"], name = ["(["] }\n',
            'runbook.toml: steps[1] (name "dig"): params.name[0]: invalid regex',
        ),
        (
            '[[steps]]\nname = "a"\ntarget = "all"\nmodule = "file"\nparams = {}\n',
            'runbook.toml: steps[0] (name "a"): params.paths: missing required parameter',
        ),
        (
            '[[steps]]\nname = "a"\ntarget = "all"\nmodule = "nosuch"\n',
            "steps[0] (name \"a\"): module: unknown module 'nosuch'",
        ),
        (
            '[[steps]]\nname = "a"\ntarget = "role in (web"\nmodule = "file"\n'
            'params = { paths = ["/"] }\n',
            'steps[0] (name "a"): target: target selector, column',
        ),
        (
            '[[steps]]\nname = "a"\nmodule = "file"\nparams = { paths = ["/"] }\n',
            'steps[0] (name "a"): target: missing',
        ),
        (
            '[[steps]]\nname = "a"\ntarget = "all"\nmodule = "file"\nparams = { paths = ["/"] }\n'
            'only_hosts_matched_by = "b"\n'
            '[[steps]]\nname = "b"\ntarget = "all"\nmodule = "file"\nparams = { paths = ["/"] }\n',
            "steps[0] (name \"a\"): only_hosts_matched_by: no earlier step is called 'b'",
        ),
        (
            '[[steps]]\nname = "a"\ntarget = "all"\nmodule = "file"\nparams = { paths = ["/"] }\n'
            'stop_if = "maybe"\n',
            "steps[0] (name \"a\"): stop_if: 'maybe' is not one of matched, nomatch, failed",
        ),
        (
            '[[steps]]\nname = "a"\ntarget = "all"\nmodule = "file"\nparams = { paths = ["/"] }\n'
            'expire = "soon"\n',
            "steps[0] (name \"a\"): expire: invalid duration 'soon'",
        ),
        (
            '[[steps]]\nname = "a"\ntarget = "all"\nmodule = "file"\nparams = { paths = ["/"] }\n'
            'tagret = "x"\n',
            'steps[0] (name "a"): tagret: unknown key',
        ),
        (
            '[[steps]]\nname = "a"\ntarget = "all"\nmodule = "file"\nparams = { paths = ["/"] }\n'
            '[[steps]]\nname = "a"\ntarget = "all"\nmodule = "file"\nparams = { paths = ["/"] }\n',
            "steps[1] (name \"a\"): name: another step is already called 'a'",
        ),
        (
            '[[steps]]\nname = "a"\ntarget = "all"\nmodule = "file"\n'
            'params = { paths = ["/"], max_depth = 1.5 }\n',
            'steps[0] (name "a"): params.max_depth',
        ),
        ("name = 'empty'\n", "runbook.toml: steps: expected at least one [[steps]] table"),
        ("steps = [", "runbook.toml: invalid TOML"),
    ],
)
def test_check_names_the_step_and_the_key(tmp_path: Path, body: str, message: str) -> None:
    done = spyglass({}, "runbook", "check", str(write(tmp_path, body)))
    assert done.returncode == 2, done.stdout
    assert done.stderr.startswith("spyglass: ") and message in done.stderr
    assert done.stderr.count("\n") == 1 or "column" in message
    assert "Traceback" not in done.stderr


def test_check_accepts_a_good_runbook_without_connecting(tmp_path: Path) -> None:
    body = (
        'target = "env=prod"\nexpire = "2m"\n'
        '[[steps]]\nname = "find"\nmodule = "file"\nparams = { paths = ["/srv"] }\n'
        'stop_if = ["nomatch", "failed"]\n'
        '[[steps]]\nname = "dig"\nmodule = "file"\nonly_hosts_matched_by = "find"\n'
        'target = "role=web"\nparams = { paths = ["/srv"], name = ["x"] }\n'
    )
    # an inventory that cannot be reached: check never connects
    done = spyglass({"SPYGLASS_INVENTORY": ""}, "runbook", "check", str(write(tmp_path, body)))
    assert done.returncode == 0, done.stderr
    assert "1. find: file on env=prod, expires after 120 s (stop if nomatch or failed)" in (
        done.stdout
    )
    assert "2. dig: file on role=web" in done.stdout and "only hosts matched by 'find'" in (
        done.stdout
    )


@pytest.mark.parametrize("path", sorted(CONTRIB.glob("*.toml")), ids=lambda p: p.name)
def test_contrib_runbooks_check(path: Path) -> None:
    import tomllib

    modules = {s["module"] for s in tomllib.loads(path.read_text())["steps"]}
    missing = [m for m in modules if get_module(m) is None]
    if missing:
        pytest.skip(f"module(s) {missing} not in this build yet")
    done = spyglass({}, "runbook", "check", str(path))
    assert done.returncode == 0, done.stderr


# -- run against the lab -----------------------------------------------------------------------
def test_second_step_runs_only_where_the_first_matched(
    lab: Lab, lab_env: dict[str, str], tmp_path: Path
) -> None:
    sha = hashlib.sha256(BACKDOOR).hexdigest()
    packages = {"name": ["^(xz-utils|liblzma5)$"], "version": ["^5\\.6\\.[01]"]}
    libraries = {"paths": ["/usr/lib"], "name": ["^liblzma\\.so"], "sha256": [sha]}
    path = runbook(
        tmp_path,
        step_table("packages", None, packages, module="pkg", stop_if="nomatch"),
        step_table("libraries", None, libraries, only_hosts_matched_by="packages"),
        name="xz sweep",
        target="all",
    )
    report_path = tmp_path / "report.json"
    done = run_runbook(lab_env, path, "--json", "--report", str(report_path))
    assert done.returncode == 0, done.stderr
    report = json.loads(report_path.read_text())
    packages, libraries = report["steps"]
    assert packages["status"] == "ran" and packages["hosts"] == LAB_SIZE
    assert packages["matched_hosts"] == [BACKDOORED]
    assert packages["matches"] == 2  # xz-utils and liblzma5
    assert libraries["status"] == "ran"
    assert libraries["hosts"] == 1 and libraries["matched_hosts"] == [BACKDOORED]
    assert libraries["matches"] == 1
    assert report["exit_status"] == 0

    store = Store(lab_env["SPYGLASS_STORE"])
    try:
        for step in report["steps"]:
            run = store.run(step["action_id"])
            assert run is not None
            counted = (run["hosts"], run["matched"], run["nomatch"], run["failed"])
            assert counted == (step["hosts"], step["matched"], step["nomatch"], step["failed"])
            assert len(store.hosts(run["id"])) == step["hosts"]
            assert len(list(store.matches(run["id"]))) == step["matches"]
        lib_hosts = [h["host"] for h in store.hosts(libraries["action_id"])]
        assert lib_hosts == [BACKDOORED]
        (row,) = list(store.matches(libraries["action_id"]))
        assert row["data"]["path"] == "/usr/lib/x86_64-linux-gnu/liblzma.so.5.6.0"
    finally:
        store.close()


def test_stop_if_nomatch_and_markdown_report(lab_env: dict[str, str], tmp_path: Path) -> None:
    nothing = {"paths": ["/srv"], "name": ["^no-such-file$"]}
    path = runbook(
        tmp_path,
        step_table("nothing", "role=web", nothing, stop_if="nomatch"),
        step_table("never", "all", {"paths": ["/srv"]}),
    )
    done = run_runbook(lab_env, path)
    assert done.returncode == 1, done.stderr
    assert "# Runbook: runbook" in done.stdout
    assert "| 1 | nothing | file | ran | 2 | 0 | 2 | 0 | 0 |" in done.stdout
    assert "| 2 | never | file | not-run | 0 |" in done.stdout
    assert "Runbook stopped here" in done.stdout
    assert "runbook stopped" in done.stderr


def test_failed_hosts_are_listed_and_exit_3(
    lab: Lab, lab_env: dict[str, str], tmp_path: Path
) -> None:
    inventory = lab_inventory(lab, tmp_path, (lab.dir / "known_hosts").read_text())
    inventory["hosts"].append(gone_host())
    env = {**lab_env, "SPYGLASS_INVENTORY": str(save_inventory(inventory, tmp_path))}
    planted = {"paths": ["/srv"], "name": [f"^{PLANTED_NAME}$"]}
    path = runbook(tmp_path, step_table("planted", "role=web or role=db", planted))
    done = run_runbook(env, path, "--json")
    assert done.returncode == 3, done.stderr
    (step,) = json.loads(done.stdout)["steps"]
    assert [f["host"] for f in step["failed_hosts"]] == ["gone"]
    assert step["failed_hosts"][0]["status"] == "unreachable"
    planted_db = {f"lab-{i + 1:03d}" for i in PLANTED}  # lab-002 and lab-004 are db and worker
    assert set(step["matched_hosts"]) == planted_db & {"lab-002"}


def test_results_diff_after_planting_a_file(
    lab: Lab, lab_env: dict[str, str], tmp_path: Path
) -> None:
    name = f"dropped-{uuid.uuid4().hex[:8]}.bin"
    path = runbook(
        tmp_path, step_table("dropped", "all", {"paths": ["/srv"], "name": [f"^{name}$"]})
    )
    first = run_runbook(lab_env, path, "--json")
    assert first.returncode == 1, first.stderr
    planted = lab.root("lab-003") / "srv" / "incoming" / name
    planted.parent.mkdir(parents=True, exist_ok=True)
    planted.write_bytes(b"new\n")
    try:
        second = run_runbook(lab_env, path, "--json")
    finally:
        planted.unlink()
    assert second.returncode == 0, second.stderr
    ids = [json.loads(out.stdout)["steps"][0]["action_id"] for out in (first, second)]
    diff = spyglass(lab_env, "results", "diff", *ids)
    assert diff.returncode == 1, diff.stderr  # the runs differ
    lines = diff.stdout.splitlines()
    assert "host\tlab-003\tnomatch -> matched" in lines
    added = [line for line in lines if line.startswith("+\t")]
    assert len(added) == 1 and added[0].startswith("+\tlab-003\t") and name in added[0]
    assert not [line for line in lines if line.startswith("-\t")]


def test_nothing_launched_exits_2(lab_env: dict[str, str], tmp_path: Path) -> None:
    path = runbook(tmp_path, step_table("nobody", "role=mainframe", {"paths": ["/srv"]}))
    done = run_runbook(lab_env, path)
    assert done.returncode == 2
    assert "no step of the runbook was launched" in done.stderr
    assert "skipped" in done.stdout
