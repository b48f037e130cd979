"""check: compliance tests against lab roots (console/lab/seed.py), some passing, some failing."""

from __future__ import annotations

import os
import socket
import tomllib
from pathlib import Path
from typing import Any

import pytest

from agentd import confine
from console.lab.seed import allows_passwords, has_backdoor, seed_root
from modules.base import CollectingContext
from modules.check import CheckModule, compare_versions
from protocol.errors import ParamError
from tests.support.confined_run import operation

MOD = CheckModule()
REPO = Path(__file__).resolve().parent.parent


def lab_root(tmp_path: Path, index: int) -> Path:
    root = tmp_path / f"lab-{index}"
    seed_root(root, index, f"lab-{index:03d}")
    return root


def run(root: Path, *tests: str, **params: Any) -> CollectingContext:
    ctx = CollectingContext(root=str(root), columns=[c.name for c in MOD.columns])
    ctx.stats = MOD.run(MOD.validate({"test": list(tests), **params}), ctx)  # type: ignore[attr-defined]
    return ctx


def verdicts(ctx: CollectingContext) -> dict[str, bool]:
    return {row["test"]: row["passed"] for row in ctx.rows}


SSHD = r"sshd content /etc/ssh/sshd_config ^\s*PasswordAuthentication\s+no\b"
XZ = r"xz not pkg xz-utils ^5\.6\.[01]"


def test_a_clean_host_passes_and_a_backdoored_one_fails(tmp_path: Path) -> None:
    assert allows_passwords(2) and has_backdoor(4) and not allows_passwords(0)
    clean, sloppy, backdoored = (lab_root(tmp_path, i) for i in (0, 2, 4))
    assert verdicts(run(clean, SSHD, XZ)) == {"sshd": True, "xz": True}
    assert verdicts(run(sloppy, SSHD, XZ)) == {"sshd": False, "xz": True}
    ctx = run(backdoored, SSHD, XZ)
    assert verdicts(ctx) == {"sshd": True, "xz": False}
    assert ctx.rows[1] == {
        "test": "xz",
        "kind": "not pkg",
        "target": "xz-utils",
        "passed": False,
        "evidence": "5.6.0-0.2",
    }
    assert ctx.stats == {"tests": 2, "passed": 1, "failed": 1, "matches": 2, "errors": 0}  # type: ignore[attr-defined]


def test_evidence_is_the_matching_line(tmp_path: Path) -> None:
    [row] = run(lab_root(tmp_path, 0), SSHD).rows
    assert row["evidence"] == "PasswordAuthentication no"


def test_pkg_below_in_dpkg_order(tmp_path: Path) -> None:
    root = lab_root(tmp_path, 0)  # openssl 3.0.14-1~deb12u2
    ctx = run(
        root,
        "old-ssl pkg-below openssl 3.0.14-1",  # ~deb12u2 sorts before the release
        "new-ssl pkg-below openssl 3.0.14-1~deb12u1",
        "absent pkg-below nosuchpkg 1.0",
        "no-absent not pkg-below nosuchpkg 1.0",
    )
    assert verdicts(ctx) == {"old-ssl": True, "new-ssl": False, "absent": False, "no-absent": True}
    assert ctx.rows[2]["evidence"] == "not installed"


def test_file_mode(tmp_path: Path) -> None:
    root = lab_root(tmp_path, 0)
    os.chmod(root / "etc/passwd", 0o644)
    os.chmod(root / "home/alice/.ssh/authorized_keys", 0o666)
    ctx = run(
        root,
        "passwd mode /etc/passwd 0644",
        "keys mode /home/alice/.ssh/authorized_keys 600",
        "missing mode /etc/shadow 0640",
    )
    assert verdicts(ctx) == {"passwd": True, "keys": False, "missing": False}
    assert [r["evidence"] for r in ctx.rows] == ["0644", "0666", "no such file"]


def test_sysctl_of_the_live_kernel(tmp_path: Path) -> None:
    value = (Path("/proc/sys/kernel/ostype")).read_text().strip()
    ctx = run(tmp_path, f"os sysctl kernel.ostype {value}", "other sysctl kernel.ostype Plan9")
    assert verdicts(ctx) == {"os": True, "other": False}
    assert ctx.rows[1]["evidence"] == value


def test_listening_port_present_and_absent(tmp_path: Path) -> None:
    with socket.socket() as server, socket.socket() as idle:
        server.bind(("127.0.0.1", 0))
        server.listen()
        idle.bind(("127.0.0.1", 0))  # held, not listening: nobody else can listen there
        port, other = server.getsockname()[1], idle.getsockname()[1]
        ctx = run(
            tmp_path,
            f"up listening {port}",
            f"up-here listening 127.0.0.1:{port}",
            f"down not listening 127.0.0.1:{other}",
            f"down-there listening [::1]:{port}",
        )
    assert verdicts(ctx) == {"up": True, "up-here": True, "down": True, "down-there": False}
    assert ctx.rows[0]["evidence"] == f"127.0.0.1:{port}"


def test_failed_reports_only_failures(tmp_path: Path) -> None:
    ctx = run(lab_root(tmp_path, 2), SSHD, XZ, failed=True)
    assert [r["test"] for r in ctx.rows] == ["sshd"]


@pytest.mark.parametrize(
    ("test", "problem"),
    [
        ("x", "expected 'ID"),
        ("x frobnicate a b", "kind must be one of"),
        ("x content etc/passwd a", "path must be absolute"),
        ("x content /etc/passwd (", "invalid regex|missing"),
        ("x mode /etc/passwd rw", "mode must be octal"),
        ("x listening 70000", "not \\[ADDRESS:\\]PORT"),
        ("x listening localhost:22", "not \\[ADDRESS:\\]PORT"),
        ("x pkg openssl", "takes 2 argument"),
    ],
)
def test_invalid_tests(test: str, problem: str) -> None:
    with pytest.raises(ParamError, match=problem):
        MOD.validate({"test": [test]})


def test_duplicate_ids_are_refused() -> None:
    with pytest.raises(ParamError, match="duplicate ID 'a'"):
        MOD.validate({"test": ["a listening 22", "a listening [::1]:23"]})


@pytest.mark.parametrize(
    ("a", "b", "order"),
    [
        ("5.6.0-0.2", "5.6.2", -1),
        ("1:1.0", "2.0", 1),
        ("1.0~rc1", "1.0", -1),
        ("1.10", "1.9", 1),
        ("2.36-9+deb12u7", "2.36-9+deb12u7", 0),
        ("1.0a", "1.0+", -1),
    ],
)
def test_debian_version_order(a: str, b: str, order: int) -> None:
    assert compare_versions(a, b) == order


@pytest.mark.parametrize("name", ["sshd-hardening.toml", "xz-backdoor-baseline.toml"])
def test_shipped_baselines_validate(name: str) -> None:
    baseline = tomllib.loads((REPO / "contrib" / "baselines" / name).read_text())
    MOD.validate({"test": baseline["test"]})


def test_the_runbook_runs_the_shipped_baseline() -> None:
    runbook = tomllib.loads((REPO / "contrib/runbooks/compliance-sshd.toml").read_text())
    baseline = tomllib.loads((REPO / "contrib/baselines/sshd-hardening.toml").read_text())
    [step] = runbook["steps"]
    assert step["module"] == "check" and step["params"]["test"] == baseline["test"]


def test_the_xz_baseline_fails_only_on_backdoored_hosts(tmp_path: Path) -> None:
    tests = tomllib.loads((REPO / "contrib/baselines/xz-backdoor-baseline.toml").read_text())
    for index in (0, 4):
        ctx = run(lab_root(tmp_path, index), *tests["test"], failed=True)
        failed = {"xz-utils", "liblzma5", "liblzma-560-file"} if has_backdoor(index) else set()
        assert set(verdicts(ctx)) == failed


@pytest.mark.skipif(not confine.support().seccomp, reason=f"no seccomp: {confine.support()}")
async def test_runs_confined_through_the_agents_child(tmp_path: Path) -> None:
    root = lab_root(tmp_path, 2)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        tests = [SSHD, XZ, f"up listening {port}", "os sysctl kernel.ostype Linux"]
        outcome, rows = await operation("check", MOD.validate({"test": tests}), root)
    assert outcome.status == "ok", outcome
    assert {r["test"]: r["passed"] for r in rows} == {
        "sshd": False,
        "xz": True,
        "up": True,
        "os": True,
    }
