"""yara: rules matching a planted file and a child process holding a known string."""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modules.base import CollectingContext, LimitReached
from modules.yara import YaraModule
from protocol.errors import ParamError
from tests.support.mod_child import running_child
from tests.support.module_runs import fits

MOD = YaraModule()
MARKER = "yara-marker-" + secrets.token_hex(8)
RULES = f"""
rule planted : evil test {{
    meta:
        author = "spyglass"
        severity = 3
    strings:
        $a = "{MARKER}"
        $b = "second-string"
    condition:
        $a or $b
}}
rule never {{ strings: $x = "this never appears in any file {secrets.token_hex(4)}" condition: $x }}
"""
EVIL = f"<?php\n{MARKER}\nx {MARKER} second-string\n{MARKER}\n"


def offsets(needle: str) -> list[int]:
    found, at = [], EVIL.find(needle)
    while at >= 0:
        found.append(at)
        at = EVIL.find(needle, at + 1)
    return found


@pytest.fixture
def root(tmp_path: Path) -> Path:
    etc = tmp_path / "srv/app"
    etc.mkdir(parents=True)
    (etc / "evil.php").write_text(EVIL)
    (etc / "clean.php").write_text("<?php echo 'hello';\n")
    (etc / "evil.txt").write_text(MARKER)
    old = etc / "old.php"
    old.write_text(MARKER)
    past = time.time() - 40 * 86400
    os.utime(old, (past, past))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.php").write_text(MARKER)
    (etc / "link.php").symlink_to(outside / "secret.php")
    (etc / "linkdir").symlink_to(outside)
    os.mkfifo(etc / "fifo.php")
    return tmp_path


def run(root: Path | str = "/", **params: Any) -> CollectingContext:
    ctx = CollectingContext(root=str(root), columns=[c.name for c in MOD.columns])
    ctx.stats = MOD.run(MOD.validate({"rules": RULES, **params}), ctx)  # type: ignore[attr-defined]
    return ctx


def paths(ctx: CollectingContext) -> list[str]:
    return sorted(r["path"] for r in ctx.rows)


def test_planted_file_row(root: Path) -> None:
    ctx = run(root, paths=["/srv"], name=["^evil\\.php$"])
    assert ctx.rows == [
        {
            "target": "file",
            "path": "/srv/app/evil.php",
            "pid": None,
            "rules": [
                {
                    "rule": "planted",
                    "namespace": "default",
                    "tags": ["evil", "test"],
                    "meta": {"author": "spyglass", "severity": 3},
                    "strings": [
                        {"identifier": "$a", "offsets": offsets(MARKER), "count": 3},
                        {"identifier": "$b", "offsets": offsets("second-string"), "count": 1},
                    ],
                }
            ],
        }
    ]
    assert MARKER not in json.dumps(ctx.rows)  # offsets only, never the matched bytes
    assert ctx.errors == []
    kinds = {c.name: c.kind for c in MOD.columns}
    assert kinds["rules"] == "json"  # objects: not a "list" column, which holds strings
    assert all(fits(kinds[k], v) for row in ctx.rows for k, v in row.items())


def test_walk_stays_in_root_and_skips_non_files(root: Path) -> None:
    ctx = run(root, paths=["/srv"])
    assert paths(ctx) == ["/srv/app/evil.php", "/srv/app/evil.txt", "/srv/app/old.php"]
    assert ctx.stats["files_scanned"] == 4  # type: ignore[attr-defined]


def test_file_filters_match_and_not(root: Path) -> None:
    assert paths(run(root, paths=["/srv"], name=["\\.txt$"])) == ["/srv/app/evil.txt"]
    assert paths(run(root, paths=["/srv"], name=["\\.py$"])) == []
    assert paths(run(root, paths=["/srv"], path_re=["^/srv/app/old"])) == ["/srv/app/old.php"]
    assert paths(run(root, paths=["/srv"], path_re=["^/etc/"])) == []
    assert paths(run(root, paths=["/srv"], size=[">30"])) == ["/srv/app/evil.php"]
    assert paths(run(root, paths=["/srv"], size=[">1M"])) == []
    assert paths(run(root, paths=["/srv"], mtime=[">30d"])) == ["/srv/app/old.php"]
    assert paths(run(root, paths=["/srv"], mtime=["<1s"], name=["old"])) == []
    assert len(paths(run(root, paths=["/srv"], mode=["^-rw"]))) == 3
    assert paths(run(root, paths=["/srv"], mode=["^-..x"])) == []


def test_fast_reports_fewer_offsets(root: Path) -> None:
    ctx = run(root, paths=["/srv/app/evil.php"], fast=True)
    [a] = [s for s in ctx.rows[0]["rules"][0]["strings"] if s["identifier"] == "$a"]
    assert a["count"] == 1


def test_max_depth_and_max_file_size(root: Path) -> None:
    assert paths(run(root, paths=["/srv"], max_depth=0)) == []
    assert len(paths(run(root, paths=["/srv"], max_depth=1))) == 3
    ctx = run(root, paths=["/srv"], max_file_size=40)
    assert paths(ctx) == ["/srv/app/evil.txt", "/srv/app/old.php"]


def test_match_limit(root: Path) -> None:
    with pytest.raises(LimitReached) as info:
        run(root, paths=["/srv"], match_limit=1)
    assert info.value.stats["matches"] == 1


@pytest.fixture(scope="module")
def child() -> Iterator[dict[str, Any]]:
    with running_child(MARKER) as info:
        yield info


def test_process_memory_by_pid(child: dict[str, Any]) -> None:
    ctx = run(pids=[child["pid"]])
    [row] = ctx.rows
    assert (row["target"], row["pid"], row["path"]) == ("process", child["pid"], None)
    assert [r["rule"] for r in row["rules"]] == ["planted"]
    assert row["rules"][0]["strings"][0]["offsets"][0] > 0  # a virtual address
    assert MARKER not in json.dumps(ctx.rows)


def test_process_name_never_scans_the_agent(child: dict[str, Any]) -> None:
    """Every python process is asked for; this one holds MARKER too but is never scanned."""
    import psutil

    name = psutil.Process(child["pid"]).name()
    ctx = run(process_name=[f"^{name}$"])
    found = {r["pid"] for r in ctx.rows}
    assert child["pid"] in found
    assert os.getpid() not in found
    assert run(process_name=["^no-such-process$"]).rows == []


def test_process_without_match(child: dict[str, Any]) -> None:
    rules = (
        'rule other { strings: $a = "not-in-the-child-' + secrets.token_hex(4) + '" condition: $a }'
    )
    ctx = CollectingContext(columns=[c.name for c in MOD.columns])
    MOD.run(MOD.validate({"rules": rules, "pids": [child["pid"]]}), ctx)
    assert ctx.rows == []


def test_own_pid_is_refused() -> None:
    ctx = run(pids=[os.getpid()])
    assert ctx.rows == [] and ctx.stats["skipped"] == 1  # type: ignore[attr-defined]


def test_syntax_error_is_invalid_params() -> None:
    with pytest.raises(ParamError, match=r"^yara: rules: invalid yara rules: .*line 1"):
        MOD.validate({"rules": "rule broken { condition: nope }", "paths": ["/srv"]})


def test_include_is_refused(tmp_path: Path) -> None:
    inc = tmp_path / "inc.yar"
    inc.write_text("rule inc { condition: true }")
    with pytest.raises(ParamError, match=r"^yara: rules: invalid yara rules: .*include"):
        MOD.validate({"rules": f'include "{inc}"\nrule r {{ condition: true }}', "pids": [1]})


def test_something_to_scan_is_required() -> None:
    with pytest.raises(ParamError, match=r"^yara: paths: give paths, pids or process_name"):
        MOD.validate({"rules": RULES})


def test_a_file_deeper_than_path_max_is_scanned(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(20):  # 5 KB of path, past PATH_MAX: built through descriptors
        os.mkdir("d" * 250, dir_fd=fd)
        child = os.open("d" * 250, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    planted = os.open("evil.php", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd)
    os.write(planted, EVIL.encode())
    os.close(planted)
    os.close(fd)
    ctx = run(tmp_path, paths=["/"])
    assert paths(ctx) == ["/" + "/".join(["d" * 250] * 20) + "/evil.php"]
    assert ctx.errors == []


def test_small_and_large_files_report_the_same_offsets(tmp_path: Path) -> None:
    # Small files are matched in memory, large ones by libyara through /proc/self/fd/N.
    (tmp_path / "small.bin").write_text(EVIL)
    (tmp_path / "large.bin").write_bytes(b"\0" * (5 << 20) + EVIL.encode())
    rows = {r["path"]: r["rules"][0]["strings"] for r in run(tmp_path, paths=["/"]).rows}
    shift = 5 << 20
    assert rows["/large.bin"] == [
        {**s, "offsets": [o + shift for o in s["offsets"]]} for s in rows["/small.bin"]
    ]
