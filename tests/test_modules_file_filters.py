"""The file module's filters, each matching, not matching and inverted, on real files."""

from __future__ import annotations

import gzip
import hashlib
import os
import time
from pathlib import Path
from typing import Any

import pytest

from modules.base import CollectingContext
from modules.registry import get_module

FILE = get_module("file")
assert FILE is not None
DAY = 86400


def search(root: Path, **params: Any) -> tuple[dict[str, list[str]], dict[str, int]]:
    """Run the file module over ``root`` (investigated as "/"): {path: matched}, stats."""
    ctx = CollectingContext(root=str(root), columns=[c.name for c in FILE.columns])
    stats = FILE.run(FILE.validate({"paths": ["/"], **params}), ctx)
    assert not ctx.errors
    return {row["path"]: row["matched"] for row in ctx.rows}, stats


def found(root: Path, **params: Any) -> set[str]:
    return set(search(root, **params)[0])


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A small system: a few configs, a script, a big log, an old file and a setuid binary."""
    root = tmp_path / "root"
    (root / "etc/ssh").mkdir(parents=True)
    (root / "usr/bin").mkdir(parents=True)
    (root / "var/log").mkdir(parents=True)
    (root / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\n"
    )
    (root / "etc/ssh/sshd_config").write_text("Port 22\nPermitRootLogin no\n")
    (root / "etc/empty").write_text("")
    (root / "usr/bin/backdoor").write_bytes(b"\x7fELF\x00\x00evil payload\x00\n")
    (root / "usr/bin/backdoor").chmod(0o4755)
    (root / "var/log/big.log").write_bytes(b"x" * 2048 + b"\nerror: disk full\n")
    old = root / "var/log/old.log"
    old.write_text("rotated\n")
    then = time.time() - 40 * DAY
    os.utime(old, (then, then))
    return root


ALL = {
    "/etc/passwd",
    "/etc/ssh/sshd_config",
    "/etc/empty",
    "/usr/bin/backdoor",
    "/var/log/big.log",
    "/var/log/old.log",
}


def test_no_filter_lists_every_file_but_no_directory(tree: Path) -> None:
    rows, stats = search(tree)
    assert set(rows) == ALL
    assert all(m == [] for m in rows.values())
    assert stats["files_scanned"] == 6 and stats["dirs_scanned"] == 7 and stats["matches"] == 6


def test_name(tree: Path) -> None:
    assert search(tree, name=["^passwd$"])[0] == {"/etc/passwd": ["name"]}
    assert found(tree, name=["^shadow$"]) == set()
    assert found(tree, name=["log$", "^big"]) == {"/var/log/big.log"}  # all values must match
    assert found(tree, name=["^passwd$"], mismatch=["name"]) == ALL - {"/etc/passwd"}


def test_path_re(tree: Path) -> None:
    assert found(tree, path_re=["^/etc/ssh/"]) == {"/etc/ssh/sshd_config"}
    assert found(tree, path_re=["^/srv/"]) == set()
    assert found(tree, path_re=["^/(etc|usr)/"], mismatch=["path_re"]) == {
        "/var/log/big.log",
        "/var/log/old.log",
    }


@pytest.mark.parametrize(
    ("bounds", "expected"),
    [
        (["=0"], {"/etc/empty"}),
        ([">1k"], {"/var/log/big.log"}),
        (["<10M"], ALL),
        (["<10"], {"/etc/empty", "/var/log/old.log"}),
        ([">10", "<100"], {"/etc/passwd", "/etc/ssh/sshd_config", "/usr/bin/backdoor"}),
        ([">1G"], set()),
    ],
)
def test_size(tree: Path, bounds: list[str], expected: set[str]) -> None:
    assert found(tree, size=bounds) == expected
    assert found(tree, size=bounds, mismatch=["size"]) == ALL - expected


@pytest.mark.parametrize(
    ("ages", "expected"),
    [
        (["<2d"], ALL - {"/var/log/old.log"}),
        ([">30d"], {"/var/log/old.log"}),
        ([">50d"], set()),
        (["<1w"], ALL - {"/var/log/old.log"}),
        (["<60m", "<1h"], ALL - {"/var/log/old.log"}),
        ([">39d", "<41d"], {"/var/log/old.log"}),
    ],
)
def test_mtime(tree: Path, ages: list[str], expected: set[str]) -> None:
    assert found(tree, mtime=ages) == expected
    assert found(tree, mtime=ages, mismatch=["mtime"]) == ALL - expected


def test_mode(tree: Path) -> None:
    assert search(tree, mode=["^-rws"])[0] == {"/usr/bin/backdoor": ["mode"]}
    assert found(tree, mode=["^-rw-r--r--$"]) == ALL - {"/usr/bin/backdoor"}
    assert found(tree, mode=["^-rws"], mismatch=["mode"]) == ALL - {"/usr/bin/backdoor"}
    assert found(tree, mode=["^d"]) == set()  # directories are walked, never reported


def test_content(tree: Path) -> None:
    assert search(tree, content=["^alice:"])[0] == {"/etc/passwd": ["content"]}
    assert found(tree, content=["^error: disk"]) == {"/var/log/big.log"}
    assert found(tree, content=["evil payload"]) == {"/usr/bin/backdoor"}  # binaries too
    assert found(tree, content=["^nobody:"]) == set()
    lacking = found(tree, name=["^(passwd|sshd_config)$"], content=["^root:"], mismatch=["content"])
    assert lacking == {"/etc/ssh/sshd_config"}


def test_content_is_line_based(tree: Path) -> None:
    assert found(tree, content=[r"bash\s+alice"]) == set()  # would span the newline
    assert found(tree, content=[r"^alice.*sh$"]) == {"/etc/passwd"}
    assert found(tree, content=["^$"]) == set()  # an empty file has no line at all


def test_several_content_regexes_must_all_match_somewhere(tree: Path) -> None:
    assert found(tree, content=["^root:", "^alice:"]) == {"/etc/passwd"}
    assert found(tree, content=["^root:", "^Port"]) == set()
    assert found(tree, content=["^root:", "^Port"], match_any=True) == {
        "/etc/passwd",
        "/etc/ssh/sshd_config",
    }


def test_macroal_wants_every_content_regex_on_one_same_line(tree: Path) -> None:
    assert found(tree, content=["^root:", "^alice:"], macroal=True) == set()
    assert found(tree, content=["^alice:", "/bin/sh$"], macroal=True) == {"/etc/passwd"}
    assert found(tree, content=["^root:", "/bin/sh$"], macroal=True) == set()
    assert found(tree, content=["^root:", "/bin/sh$"]) == {"/etc/passwd"}
    assert found(
        tree, path_re=["^/etc/"], content=["^root:", "/bin/sh$"], macroal=True, mismatch=["content"]
    ) == {
        "/etc/passwd",
        "/etc/ssh/sshd_config",
        "/etc/empty",
    }


ALGOS = ["md5", "sha1", "sha256", "sha512", "sha3_256"]


@pytest.mark.parametrize("algo", ALGOS)
def test_every_digest(tree: Path, algo: str) -> None:
    digest = hashlib.new(algo, (tree / "etc/passwd").read_bytes()).hexdigest()
    other = hashlib.new(algo, b"something else").hexdigest()
    assert search(tree, **{algo: [other, digest]})[0] == {"/etc/passwd": [algo]}
    assert found(tree, **{algo: [digest.upper()]}) == {"/etc/passwd"}
    assert found(tree, **{algo: [other]}) == set()
    assert found(tree, **{algo: [digest, other]}, mismatch=[algo]) == ALL - {"/etc/passwd"}


def test_all_filters_must_match_unless_match_any(tree: Path) -> None:
    digest = hashlib.sha256((tree / "etc/ssh/sshd_config").read_bytes()).hexdigest()
    params: dict[str, Any] = {"name": ["^passwd$"], "sha256": [digest]}
    assert found(tree, **params) == set()
    rows, _ = search(tree, **params, match_any=True)
    assert rows == {"/etc/passwd": ["name"], "/etc/ssh/sshd_config": ["sha256"]}
    rows, _ = search(tree, name=["^passwd$"], content=["^root:"], size=[">1"])
    assert rows == {"/etc/passwd": ["name", "size", "content"]}


def test_sha256_column(tree: Path) -> None:
    digest = hashlib.sha256((tree / "etc/passwd").read_bytes()).hexdigest()
    ctx = CollectingContext(root=str(tree))
    FILE.run(FILE.validate({"paths": ["/etc"], "name": ["^passwd$"]}), ctx)
    assert ctx.rows[0]["sha256"] is None
    ctx = CollectingContext(root=str(tree))
    FILE.run(FILE.validate({"paths": ["/etc"], "name": ["^passwd$"], "return_sha256": True}), ctx)
    assert ctx.rows == [
        {
            "path": "/etc/passwd",
            "size": (tree / "etc/passwd").stat().st_size,
            "mode": "-rw-r--r--",
            "mtime": int((tree / "etc/passwd").stat().st_mtime),
            "sha256": digest,
            "matched": ["name"],
        }
    ]
    ctx = CollectingContext(root=str(tree))
    FILE.run(FILE.validate({"paths": ["/"], "sha256": [digest]}), ctx)
    assert ctx.rows[0]["sha256"] == digest


def test_decompress_reads_gzip_content(tree: Path) -> None:
    text = b"Accepted publickey for mallory from 203.0.113.9\n" * 1000
    (tree / "var/log/auth.log.2.gz").write_bytes(gzip.compress(text))
    assert found(tree, content=["mallory"]) == set()
    assert found(tree, content=["mallory"], decompress=True) == {"/var/log/auth.log.2.gz"}
    digest = hashlib.sha256(text).hexdigest()
    assert found(tree, sha256=[digest], decompress=True) == {"/var/log/auth.log.2.gz"}
    assert found(tree, content=["^root:"], decompress=True) == {"/etc/passwd"}  # plain files too


def test_decompress_bounded_by_max_file_size(tree: Path) -> None:
    (tree / "bomb.gz").write_bytes(gzip.compress(b"\0" * (64 << 20) + b"\nneedle\n"))
    assert found(tree, content=["needle"], decompress=True) == {"/bomb.gz"}
    rows, stats = search(
        tree, path_re=["^/bomb"], content=["needle"], decompress=True, max_file_size=1 << 20
    )
    assert rows == {} and stats["skipped"] == 1


def test_corrupt_gzip_is_a_soft_error(tree: Path) -> None:
    (tree / "bad.gz").write_bytes(gzip.compress(os.urandom(100000))[:200])
    ctx = CollectingContext(root=str(tree))
    digest = "0" * 32  # a digest needs the whole stream: the truncation shows
    stats = FILE.run(FILE.validate({"paths": ["/"], "md5": [digest], "decompress": True}), ctx)
    assert ctx.errors == ["/bad.gz: truncated gzip stream"] and stats["errors"] == 1
    assert ctx.rows == []


def test_max_file_size_skips_reading_bigger_files(tree: Path) -> None:
    rows, stats = search(tree, content=["disk full"], max_file_size=1024)
    assert rows == {} and stats["skipped"] == 1 and stats["bytes_read"] < 1024
    rows, _ = search(tree, content=["disk full"], max_file_size=1024, name=["^big"], match_any=True)
    assert rows == {"/var/log/big.log": ["name"]}
