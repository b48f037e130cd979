"""The ``pkg`` module: installed packages from dpkg, rpm and apk, by name and version regexes.

dpkg and apk keep their databases as text files, read here directly below the investigated root
(so a mounted image or a container's rootfs works without its tools). rpm's database is binary
(Berkeley DB, NDB or SQLite depending on the release), so it is asked through the ``rpm`` tool,
with ``--root``, when that tool is installed; otherwise rpm is skipped quietly.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from typing import Any

from modules.base import Column, LimitReached, Module, Needs, Param, RunContext
from modules.fs.rootpath import Root
from modules.regex import text_search
from modules.soft_errors import MAX_ERRORS, SoftErrors

DPKG_STATUS = "/var/lib/dpkg/status"
APK_INSTALLED = "/lib/apk/db/installed"
#: Where rpm keeps its database (the second since Fedora 36 / RHEL 9).
RPM_DBS = ("/var/lib/rpm", "/usr/lib/sysimage/rpm")
#: dpkg states of a package that is not (or no longer) on disk.
_DPKG_ABSENT = {"not-installed", "config-files"}
_RPM_FORMAT = r"%{NAME}\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\t%{ARCH}\n"
_RPM_TIMEOUT = 120
#: A package database larger than this is read only this far.
MAX_DATABASE = 256 << 20

Package = tuple[str, str, str | None]  # name, version, arch


def _stanzas(text: str) -> Iterator[dict[str, str]]:
    """Blank-line separated ``Key: value`` records (dpkg); continuation lines are skipped."""
    record: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if record:
                yield record
                record = {}
        elif not line[0].isspace():
            key, sep, value = line.partition(":")
            if sep:
                record[key] = value.strip()
    if record:
        yield record


def parse_dpkg_status(text: str) -> Iterator[Package]:
    """Installed packages of a dpkg status file; versions as dpkg prints them (epoch:ver-rev)."""
    for rec in _stanzas(text):
        state = rec.get("Status", "").split()
        if "Package" not in rec or not state or state[-1] in _DPKG_ABSENT:
            continue
        yield rec["Package"], rec.get("Version", ""), rec.get("Architecture")


def parse_apk_installed(text: str) -> Iterator[Package]:
    """Packages of an apk database: records of ``X:value`` lines (P name, V version, A arch)."""
    record: dict[str, str] = {}
    for line in [*text.splitlines(), ""]:
        if len(line) >= 2 and line[1] == ":":
            record.setdefault(line[0], line[2:])
        elif not line.strip() and record:
            if "P" in record:
                yield record["P"], record.get("V", ""), record.get("A")
            record = {}


def parse_rpm_output(text: str) -> Iterator[Package]:
    """Lines of ``rpm -qa --qf NAME\\tVERSION\\tARCH``; gpg-pubkey pseudo packages are kept."""
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[0]:
            arch = None if parts[2] in ("", "(none)") else parts[2]
            yield parts[0], parts[1], arch


class PkgModule(Module):
    """Lists installed packages whose name (and version) match, across package managers."""

    name = "pkg"
    needs = Needs(execute=("rpm",))  # rpm reads its own formats
    summary = "Installed packages (dpkg, rpm, apk) by name and version"
    params = (
        Param(
            "name",
            "regex",
            "Regex searched in the package name; several: any may match (default: every package)",
            repeatable=True,
        ),
        Param(
            "version",
            "regex",
            "Regex searched in the version (as the manager prints it); several: any may match",
            repeatable=True,
        ),
        MAX_ERRORS,
    )
    example = {"name": ["^openssl$", "^libssl"], "version": ["^3\\."]}
    columns = (
        Column("name", "Package name"),
        Column("version", "Version as the package manager prints it (dpkg: epoch:version-rev)"),
        Column("arch", "Architecture (amd64, x86_64, noarch, ...)"),
        Column("source", "Package manager: dpkg, rpm or apk"),
    )

    def run(self, params: dict[str, Any], ctx: RunContext) -> dict[str, int]:
        names = [text_search(p) for p in params["name"]]
        versions = [text_search(p) for p in params["version"]]
        stats = {"databases": 0, "packages_scanned": 0, "matches": 0, "errors": 0}
        errors = SoftErrors(ctx, stats, params["max_errors"])
        try:
            for source, packages in self.sources(ctx, stats, errors):
                for name, version, arch in packages:
                    stats["packages_scanned"] += 1
                    if names and not any(found(name) for found in names):
                        continue
                    if versions and not any(found(version) for found in versions):
                        continue
                    ctx.emit({"name": name, "version": version, "arch": arch, "source": source})
                    stats["matches"] += 1
                ctx.progress(stats)
        except LimitReached as err:  # the agent's cap, raised by emit
            err.stats = dict(stats)
            raise
        if not stats["databases"]:
            ctx.error("no package database found (dpkg, rpm, apk)")
        return stats

    def sources(
        self, ctx: RunContext, stats: dict[str, int], errors: SoftErrors
    ) -> Iterator[tuple[str, Iterator[Package]]]:
        root = Root(ctx.root)
        for source, path, parse in (
            ("dpkg", DPKG_STATUS, parse_dpkg_status),
            ("apk", APK_INSTALLED, parse_apk_installed),
        ):
            text = _read_below(root, path, errors)
            if text is not None:
                stats["databases"] += 1
                yield source, parse(text)
        has_rpm_db = any(_is_dir(root, db) for db in RPM_DBS)
        rpm_out = _query_rpm(ctx, errors) if has_rpm_db else None
        if rpm_out is not None:
            stats["databases"] += 1
            yield "rpm", parse_rpm_output(rpm_out)


def _read_below(root: Root, path: str, errors: SoftErrors) -> str | None:
    """A database file below root; None when absent (no such manager), soft error if unreadable
    or not a regular file (a FIFO planted there is refused, never waited on)."""
    try:
        return root.read(path, MAX_DATABASE).decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except OSError as err:
        errors(path, err)
        return None


def _is_dir(root: Root, path: str) -> bool:
    try:
        at = root.locate(path)
    except OSError:
        return False
    try:
        return stat.S_ISDIR(os.stat(at.name, dir_fd=at.dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False
    finally:
        os.close(at.dir_fd)


def _query_rpm(ctx: RunContext, errors: SoftErrors) -> str | None:
    """``rpm -qa`` output for the root, or None when rpm is not installed (rpm is installed on
    Debian for alien, say, with nothing managed by it: the caller asks only if a database is)."""
    rpm = shutil.which("rpm")
    if rpm is None:
        return None
    argv = [rpm, "-qa", "--root", os.path.abspath(ctx.root), "--qf", _RPM_FORMAT]
    # Imported here, in the operation's child: subprocess brings threading into the zygote, and
    # threading's at-fork hook would then cost every child of every module 0.6 ms.
    import subprocess

    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=_RPM_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        errors("rpm", str(err))
        return None
    if done.returncode != 0:
        errors("rpm", f"exited with {done.returncode}: {done.stderr.strip()[:200]}")
        return None
    return done.stdout
