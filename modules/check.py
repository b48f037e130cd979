"""The ``check`` module: a signed list of compliance tests evaluated on the endpoint (MIG's scribe,
simplified), one row per test with pass/fail and the evidence.

Each test is one string, ``ID [not] KIND ARGS``:

- ``content PATH REGEX``: a line of the file (below the root) matches the regex (RE2);
- ``pkg NAME REGEX``: package NAME is installed with a version matching the regex;
- ``pkg-below NAME VERSION``: package NAME is installed with a version below VERSION (dpkg order);
- ``mode PATH OCTAL``: the file's permission bits are exactly OCTAL (``0600``);
- ``sysctl NAME VALUE``: the live kernel's ``/proc/sys`` value (``net.ipv4.ip_forward``) is VALUE;
- ``listening [ADDRESS:]PORT``: a TCP socket listens on PORT (on ADDRESS, if given; live host).

``not`` inverts the verdict (MIG's ``mismatch``): ``xz not pkg xz-utils ^5\\.6\\.[01]`` passes
where no backdoored xz is installed. Files and packages are read with the file and pkg modules'
code (``modules.fs``, ``modules.pkg``), so a disk image or a container's root works.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from dataclasses import dataclass
from typing import Any

from modules.base import Column, LimitReached, Module, Needs, Param, RunContext
from modules.fs.rootpath import Root
from modules.pkg import PkgModule
from modules.regex import BytesRegex, text_search
from modules.regex import check as check_regex
from modules.soft_errors import MAX_ERRORS, SoftErrors
from protocol.errors import ParamError

#: Arguments of each kind of test (the last one takes the rest of the line, spaces and all).
KINDS = {"content": 2, "pkg": 2, "pkg-below": 2, "mode": 2, "sysctl": 2, "listening": 1}
MAX_FILE = 4 << 20
_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True)
class Test:
    id: str
    kind: str
    args: tuple[str, ...]
    invert: bool


def parse_test(text: str) -> Test:
    """``ID [not] KIND ARGS`` -> Test; ValueError says what is wrong."""
    words = text.split(None, 2)
    if len(words) < 2 or not _ID.fullmatch(words[0]):
        raise ValueError(f"expected 'ID [not] KIND ARGS', got {text!r}")
    invert = words[1] == "not"
    rest = text.split(None, 3 if invert else 2)[1 + invert :]
    if not rest or rest[0] not in KINDS:
        raise ValueError(f"{words[0]}: kind must be one of {', '.join(KINDS)}")
    kind, tail = rest[0], rest[1] if len(rest) > 1 else ""
    args = tuple(tail.split(None, KINDS[kind] - 1))
    if len(args) != KINDS[kind]:
        raise ValueError(f"{words[0]}: {kind} takes {KINDS[kind]} argument(s)")
    if kind in ("content", "mode") and not args[0].startswith("/"):
        raise ValueError(f"{words[0]}: path must be absolute: {args[0]!r}")
    if kind in ("content", "pkg"):
        check_regex(args[1])
    if kind == "mode" and not re.fullmatch(r"0?[0-7]{3,4}", args[1]):
        raise ValueError(f"{words[0]}: mode must be octal, e.g. 0600: {args[1]!r}")
    if kind == "listening":
        try:
            listen_address(args[0])
        except ValueError:
            raise ValueError(f"{words[0]}: not [ADDRESS:]PORT: {args[0]!r}") from None
    if kind == "sysctl" and not re.fullmatch(r"[a-z0-9_]+(\.[a-z0-9_-]+)+", args[0]):
        raise ValueError(f"{words[0]}: not a sysctl name: {args[0]!r}")
    return Test(words[0], kind, args, invert)


def listen_address(text: str) -> tuple[str | None, int]:
    """``22`` -> (None, 22), ``127.0.0.1:22`` and ``[::1]:22`` -> (address, 22)."""
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(text)
    if not host:
        return None, int(port)
    return str(ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))), int(port)


def _order(c: str) -> int:
    """dpkg's character order: ``~`` before everything, even the end; letters before others."""
    if c == "~":
        return -1
    if c.isdigit():
        return 0
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _compare_part(a: str, b: str) -> int:
    while a or b:
        i = j = 0
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ca = _order(a[i]) if i < len(a) and not a[i].isdigit() else 0
            cb = _order(b[j]) if j < len(b) and not b[j].isdigit() else 0
            if ca != cb:
                return -1 if ca < cb else 1
            i, j = i + 1, j + 1
        a, b = a[i:], b[j:]
        da, db = len(a) - len(a.lstrip("0123456789")), len(b) - len(b.lstrip("0123456789"))
        x, y = int(a[:da] or 0), int(b[:db] or 0)
        if x != y:
            return -1 if x < y else 1
        a, b = a[da:], b[db:]
    return 0


def compare_versions(a: str, b: str) -> int:
    """Debian's version order (epoch, upstream, revision): -1, 0 or 1."""

    def split(v: str) -> tuple[int, str, str]:
        epoch, _, rest = v.rpartition(":") if ":" in v else ("0", "", v)
        upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "")
        return int(epoch) if epoch.isdigit() else 0, upstream, revision

    ea, ua, ra = split(a)
    eb, ub, rb = split(b)
    if ea != eb:
        return -1 if ea < eb else 1
    return _compare_part(ua, ub) or _compare_part(ra, rb)


class CheckModule(Module):
    """Evaluates a compliance baseline: each test a row, passed or not, with its evidence."""

    name = "check"
    needs = Needs(read=("/proc",), execute=("rpm",))  # /proc/sys, /proc/net; rpm as pkg does
    summary = "Compliance tests (file content, package version, file mode, sysctl, listening port)"
    params = (
        Param(
            "test",
            "string",
            "A test: 'ID [not] KIND ARGS', KIND one of " + ", ".join(KINDS) + " (see docs)",
            repeatable=True,
            required=True,
        ),
        Param("failed", "bool", "Report only the tests that failed"),
        MAX_ERRORS,
    )
    example = {
        "test": [
            "sshd-no-passwords content /etc/ssh/sshd_config ^\\s*PasswordAuthentication\\s+no",
            "xz-not-backdoored not pkg xz-utils ^5\\.6\\.[01]",
        ]
    }
    columns = (
        Column("test", "The test's ID"),
        Column("kind", "content, pkg, pkg-below, mode, sysctl or listening (not: inverted)"),
        Column("target", "The path, package, sysctl or port tested", "path"),
        Column("passed", "The test passed (after any 'not')", "bool"),
        Column("evidence", "What was found: the matching line, version, mode, value or socket"),
    )

    def check(self, params: dict[str, Any]) -> None:
        ids: set[str] = set()
        for i, text in enumerate(params["test"]):
            try:
                test = parse_test(text)
            except ValueError as err:
                raise ParamError(f"test[{i}]: {err}") from None
            if test.id in ids:
                raise ParamError(f"test[{i}]: duplicate ID {test.id!r}")
            ids.add(test.id)

    def run(self, params: dict[str, Any], ctx: RunContext) -> dict[str, int]:
        stats = {"tests": 0, "passed": 0, "failed": 0, "matches": 0, "errors": 0}
        errors = SoftErrors(ctx, stats, params["max_errors"])
        packages: list[tuple[str, str]] | None = None
        try:
            for test in map(parse_test, params["test"]):
                if test.kind.startswith("pkg") and packages is None:
                    packages = self._packages(ctx, stats, errors)
                found, evidence = self._evaluate(test, ctx, packages or [], errors)
                passed = found != test.invert
                stats["tests"] += 1
                stats["passed" if passed else "failed"] += 1
                if params["failed"] and passed:
                    continue
                ctx.emit(
                    {
                        "test": test.id,
                        "kind": ("not " if test.invert else "") + test.kind,
                        "target": test.args[0],
                        "passed": passed,
                        "evidence": evidence,
                    }
                )
                stats["matches"] += 1
                ctx.progress(stats)
        except LimitReached as err:
            err.stats = dict(stats)
            raise
        return stats

    def _packages(
        self, ctx: RunContext, stats: dict[str, int], errors: SoftErrors
    ) -> list[tuple[str, str]]:
        counts: dict[str, int] = {"databases": 0}
        found = [
            (name, version)
            for _source, rows in PkgModule().sources(ctx, counts, errors)
            for name, version, _arch in rows
        ]
        if not counts["databases"]:
            errors("packages", "no package database found (dpkg, rpm, apk)")
        return found

    def _evaluate(
        self, test: Test, ctx: RunContext, packages: list[tuple[str, str]], errors: SoftErrors
    ) -> tuple[bool, str | None]:
        """Whether the test's condition holds (before any ``not``), and the evidence."""
        first = test.args[0]
        if test.kind in ("pkg", "pkg-below"):
            versions = [v for name, v in packages if name == first]
            if test.kind == "pkg":
                found = text_search(test.args[1])
                hits = [v for v in versions if found(v)]
            else:
                hits = [v for v in versions if compare_versions(v, test.args[1]) < 0]
            shown = hits or versions
            return bool(hits), ", ".join(shown) if shown else "not installed"
        try:
            if test.kind == "content":
                return _content(Root(ctx.root), first, test.args[1])
            if test.kind == "mode":
                mode = _mode(Root(ctx.root), first)
                return mode == int(test.args[1], 8), f"{mode:04o}"
            if test.kind == "sysctl":
                value = _sysctl(first)
                return value.split() == test.args[1].split(), value
            return _listening(*listen_address(first))
        except FileNotFoundError:
            return False, "no such file"
        except OSError as err:
            errors(f"{test.id}: {first}", err)
            return False, f"unreadable: {err.strerror or err}"


def _content(root: Root, path: str, pattern: str) -> tuple[bool, str | None]:
    regex = BytesRegex(pattern, lines=True)
    data = root.read(path, MAX_FILE)
    at = regex.find(data)
    if at < 0:
        return False, None
    start = data.rfind(b"\n", 0, at) + 1
    end = data.find(b"\n", at)
    return True, data[start : end if end >= 0 else len(data)].decode("utf-8", "replace")


def _mode(root: Root, path: str) -> int:
    at = root.locate(path)
    try:
        return stat.S_IMODE(os.stat(at.name, dir_fd=at.dir_fd, follow_symlinks=False).st_mode)
    finally:
        os.close(at.dir_fd)


def _sysctl(name: str) -> str:
    """The live kernel's value (never below the root: a disk image has no kernel)."""
    with open("/proc/sys/" + name.replace(".", "/"), encoding="utf-8") as f:
        return f.read(4096).strip()


def _listening(address: str | None, port: int) -> tuple[bool, str | None]:
    """A TCP socket in LISTEN on ``port`` (on ``address`` or any), from the live host's socket
    tables."""
    import psutil  # heavy import, only when a test needs it

    for c in psutil.net_connections(kind="tcp"):
        if c.status != psutil.CONN_LISTEN or not c.laddr or c.laddr.port != port:
            continue
        if address is None or ipaddress.ip_address(c.laddr.ip) == ipaddress.ip_address(address):
            return True, f"{c.laddr.ip}:{c.laddr.port}"
    return False, None
