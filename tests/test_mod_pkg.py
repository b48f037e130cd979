"""pkg: dpkg and apk databases read below the root, rpm through a stand-in ``rpm`` tool."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest

from modules.base import CollectingContext, LimitReached
from modules.pkg import PkgModule
from protocol.errors import ParamError

DATA = Path(__file__).parent / "data" / "mod" / "pkg"
MOD = PkgModule()


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A root holding the dpkg and apk fixtures; no rpm on PATH."""
    (tmp_path / "var/lib/dpkg").mkdir(parents=True)
    shutil.copy(DATA / "dpkg_status", tmp_path / "var/lib/dpkg/status")
    (tmp_path / "lib/apk/db").mkdir(parents=True)
    shutil.copy(DATA / "apk_installed", tmp_path / "lib/apk/db/installed")
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    return tmp_path


def run(root: Path, max_rows: int | None = None, **params: Any) -> CollectingContext:
    ctx = CollectingContext(
        root=str(root), columns=[c.name for c in MOD.columns], max_rows=max_rows
    )
    ctx.stats = MOD.run(MOD.validate(params), ctx)  # type: ignore[attr-defined]
    return ctx


def names(ctx: CollectingContext) -> list[str]:
    return [r["name"] for r in ctx.rows]


def test_every_installed_package_without_filters(root: Path) -> None:
    ctx = run(root)
    assert names(ctx) == [
        "openssl",
        "libssl3",
        "bash",
        "tzdata",
        "python3-minimal",
        "musl",
        "busybox",
    ]
    assert ctx.rows[0] == {
        "name": "openssl",
        "version": "3.0.11-1~deb12u2",
        "arch": "amd64",
        "source": "dpkg",
    }
    assert ctx.rows[4]["version"] == "1:3.11.2-1+b1"  # epoch kept, as dpkg -l shows it
    assert ctx.rows[-1] == {
        "name": "busybox",
        "version": "1.36.1-r15",
        "arch": "x86_64",
        "source": "apk",
    }
    assert ctx.stats == {"databases": 2, "packages_scanned": 7, "matches": 7, "errors": 0}
    assert ctx.errors == []


def test_name_matches_and_does_not_match(root: Path) -> None:
    assert names(run(root, name=["ssl"])) == ["openssl", "libssl3"]
    assert names(run(root, name=["^ssl"])) == []
    assert names(run(root, name=["^bash$", "^musl$"])) == ["bash", "musl"]  # any of several


def test_version_matches_and_does_not_match(root: Path) -> None:
    assert names(run(root, version=["^3\\.0\\.11"])) == ["openssl", "libssl3"]
    assert names(run(root, version=["9\\.9\\.9"])) == []  # text in a description is no field
    assert names(run(root, name=["ssl"], version=["^5"])) == []  # name and version both hold


def test_removed_packages_are_not_listed(root: Path) -> None:
    listed = names(run(root))
    assert "xz-utils" not in listed and "ghost" not in listed


def test_missing_databases_is_one_soft_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    ctx = run(tmp_path)
    assert ctx.rows == []
    assert ctx.errors == ["no package database found (dpkg, rpm, apk)"]


def test_unreadable_status_is_a_soft_error(root: Path) -> None:
    status = root / "var/lib/dpkg/status"
    status.unlink()
    status.mkdir()  # reading a directory fails even as root
    ctx = run(root)
    assert names(ctx) == ["musl", "busybox"]
    assert ctx.errors == ["/var/lib/dpkg/status: Is a directory"]


def test_database_symlink_stays_in_root(
    root: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("outside")
    shutil.copy(DATA / "dpkg_status", outside / "status")
    status = root / "var/lib/dpkg/status"
    status.unlink()
    status.symlink_to(outside / "status")  # absolute: resolved inside the root, where it is absent
    assert "openssl" not in names(run(root))


def test_rpm_is_asked_with_root(root: Path) -> None:
    bin_dir = root / "no-bin"
    bin_dir.mkdir()
    (root / "var/lib/rpm").mkdir()
    log = root / "argv"
    fake = bin_dir / "rpm"
    fake.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$@" > {log}\n'
        "printf 'kernel\\t0:5.14.0-362.el9\\tx86_64\\n'\n"
        "printf 'gpg-pubkey\\t8483c65d-5ccc5b19\\t(none)\\n'\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    ctx = run(root, name=["kernel|gpg"])
    assert ctx.rows == [
        {"name": "kernel", "version": "0:5.14.0-362.el9", "arch": "x86_64", "source": "rpm"},
        {"name": "gpg-pubkey", "version": "8483c65d-5ccc5b19", "arch": None, "source": "rpm"},
    ]
    argv = log.read_text().splitlines()
    assert argv[:3] == ["-qa", "--root", os.path.abspath(root)]


def test_rpm_without_database_is_skipped_quietly(root: Path) -> None:
    bin_dir = root / "no-bin"
    bin_dir.mkdir()
    fake = bin_dir / "rpm"
    fake.write_text("#!/bin/sh\necho should not run >&2\nexit 1\n")
    fake.chmod(0o755)
    ctx = run(root)
    assert "rpm" not in {r["source"] for r in ctx.rows}
    assert ctx.errors == []


def test_agent_cap_carries_stats(root: Path) -> None:
    with pytest.raises(LimitReached) as info:
        run(root, max_rows=2)
    assert info.value.stats["matches"] == 2


def test_bad_regex_is_rejected() -> None:
    with pytest.raises(ParamError, match=r"^pkg: name\[0\]: invalid regex"):
        MOD.validate({"name": ["("]})
