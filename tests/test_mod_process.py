"""process: a child process made by the test holds a known string in memory."""

from __future__ import annotations

import hashlib
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentd.runner import Budget, Zygote, run_operation
from modules.base import CollectingContext
from modules.proc_snapshot import agent_pids, protected_pids
from modules.process import ProcessModule, parse_maps
from protocol.agent_config import LimitsSection
from protocol.errors import ParamError
from tests.support.confined_run import fresh_zygote
from tests.support.mod_child import CHILD, running_child

__all__ = ["fresh_zygote"]  # a fixture: used by its name

MOD = ProcessModule()
MARKER = "spyglass-marker-" + secrets.token_hex(8)  # also in this process: never read
#: The child's role flag, unique per test process: xdist workers and other checkouts' runs on the
#: same machine start children of their own, which must not match this one's scope.
ROLE = "--role=process-test-" + secrets.token_hex(4)


@pytest.fixture(scope="module")
def child() -> Iterator[dict[str, Any]]:
    with running_child(MARKER, ROLE) as info:
        yield info


def run(**params: Any) -> CollectingContext:
    ctx = CollectingContext(columns=[c.name for c in MOD.columns])
    ctx.stats = MOD.run(MOD.validate(params), ctx)  # type: ignore[attr-defined]
    return ctx


SCOPE = {"cmdline": [ROLE]}  # only the child matches this


def pids(**params: Any) -> list[int]:
    return [r["pid"] for r in run(**params).rows]


def matched(child: dict[str, Any], **params: Any) -> list[str] | None:
    rows = [r for r in run(**params).rows if r["pid"] == child["pid"]]
    return rows[0]["matched"] if rows else None


def test_cmdline_row(child: dict[str, Any]) -> None:
    rows = run(**SCOPE).rows
    assert rows == [
        {
            "pid": child["pid"],
            "name": rows[0]["name"],
            "exe": os.path.realpath(sys.executable),
            "cmdline": f"{sys.executable} {CHILD} {ROLE}",
            "user": rows[0]["user"],
            "matched": ["cmdline"],
        }
    ]
    assert pids(cmdline=["--role=no-such-role"]) == []


def test_no_filters_lists_every_process(child: dict[str, Any]) -> None:
    listed = pids(include_agent=True)
    assert child["pid"] in listed and os.getpid() in listed and len(listed) > 2


def test_name_and_exe(child: dict[str, Any]) -> None:
    import psutil

    name = psutil.Process(child["pid"]).name()
    assert matched(child, name=[f"^{name}$"], **SCOPE) == ["name", "cmdline"]
    assert matched(child, name=["^no-such-name$"], **SCOPE) is None
    exe = os.path.basename(os.path.realpath(sys.executable))
    assert matched(child, exe=[f"/{exe}$"], **SCOPE) == ["cmdline", "exe"]
    assert matched(child, exe=["^/nonexistent/"], **SCOPE) is None


def test_user(child: dict[str, Any]) -> None:
    import pwd

    uid = os.getuid()
    assert matched(child, user=[pwd.getpwuid(uid).pw_name], **SCOPE) == ["cmdline", "user"]
    assert matched(child, user=[str(uid)], **SCOPE) == ["cmdline", "user"]
    assert matched(child, user=[str(uid + 4242)], **SCOPE) is None


def test_exe_sha256(child: dict[str, Any]) -> None:
    digest = hashlib.sha256(Path(sys.executable).resolve().read_bytes()).hexdigest()
    assert matched(child, exe_sha256=[digest], **SCOPE) == ["cmdline", "exe_sha256"]
    assert matched(child, exe_sha256=["0" * 64], **SCOPE) is None


def test_library(child: dict[str, Any]) -> None:
    maps = Path(f"/proc/{child['pid']}/maps").read_text()
    lib = "_socket" if "_socket" in maps else "libc"
    assert matched(child, library=[lib], **SCOPE) == ["cmdline", "library"]
    assert matched(child, library=["libdoes-not-exist"], **SCOPE) is None


def test_content_in_memory(child: dict[str, Any]) -> None:
    assert matched(child, content=[MARKER], **SCOPE) == ["cmdline", "content"]
    assert matched(child, content=["spyglass-marker-[0-9a-f]{16}"], **SCOPE) == [
        "cmdline",
        "content",
    ]
    assert matched(child, content=["never-in-any-memory-" + "x" * 3 + "!"], **SCOPE) is None


def test_bytes_in_memory(child: dict[str, Any]) -> None:
    needle = (MARKER.encode() + b"\x00\x01\x02").hex()
    assert matched(child, bytes=[needle], **SCOPE) == ["cmdline", "bytes"]
    assert matched(child, bytes=[secrets.token_hex(24)], **SCOPE) is None
    both = matched(child, content=[MARKER], bytes=[needle], **SCOPE)
    assert both == ["cmdline", "content", "bytes"]


def test_max_length_bounds_the_read(child: dict[str, Any]) -> None:
    ctx = run(content=[MARKER], max_length=1, **SCOPE)
    assert ctx.rows == [] and ctx.stats["bytes_read"] == 1  # type: ignore[attr-defined]


def test_match_any(child: dict[str, Any]) -> None:
    assert matched(child, content=["never-in-any-memory-" + "y" * 3], **SCOPE) is None
    got = matched(child, content=["never-in-any-memory-" + "y" * 3], match_any=True, **SCOPE)
    assert got == ["cmdline"]


def test_own_memory_is_never_read(child: dict[str, Any]) -> None:
    """This process holds MARKER too (and so does the search itself): only the child is found,
    even with the agent's own processes listed."""
    ctx = run(content=[MARKER], include_agent=True)
    found = {r["pid"] for r in ctx.rows}
    assert child["pid"] in found
    assert os.getpid() not in found and os.getppid() not in found
    assert {os.getpid(), os.getppid()} <= protected_pids()
    assert ctx.stats["skipped"] >= 2  # type: ignore[attr-defined]


async def test_the_agents_own_processes_are_left_out_unless_asked(
    fresh_zygote: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Through the real runner: the zygote and the operation child running the module match
    a search for the zygote's command line only with ``include_agent``."""
    launched: list[int] = []
    launch = Zygote.launch

    async def recording(self: Zygote, request: Any, result_fd: int) -> Any:
        pid, exited = await launch(self, request, result_fd)
        launched.append(pid)
        return pid, exited

    monkeypatch.setattr(Zygote, "launch", recording)
    scope = {"cmdline": [r" -m agentd\.zygote "]}
    left_out = await operation(scope, tmp_path)
    listed = await operation({**scope, "include_agent": True}, tmp_path)
    zygote = Zygote.current().process.pid
    assert len(launched) == 2
    assert not {zygote, *launched} & left_out
    assert {zygote, launched[1]} <= listed


async def operation(params: dict[str, Any], root: Path) -> set[int]:
    """The pids of the rows of a process operation run as the agent runs it."""
    rows: list[dict[str, Any]] = []
    outcome = await run_operation(
        "process",
        MOD.validate(params),
        root=str(root),
        limits=LimitsSection(),
        timeout=60,
        budget=Budget(10000, 16 << 20),
        sink=lambda kind, payload: rows.append(payload) if kind == "match" else None,
    )
    assert outcome.status == "ok", outcome
    return {r["pid"] for r in rows}


def test_agent_pids_are_this_process_its_parent_and_siblings() -> None:
    import psutil

    family = agent_pids()
    parent = os.getppid()
    assert {os.getpid(), parent} | {c.pid for c in psutil.Process(parent).children()} >= family
    assert {os.getpid(), parent} <= family
    assert family <= protected_pids()


def test_parse_maps() -> None:
    text = (
        "55d0c0a00000-55d0c0a21000 r--p 00000000 08:01 1234 /usr/bin/python3.11\n"
        "7ffd1c000000-7ffd1c021000 rw-p 00000000 00:00 0 [stack]\n"
        "7f0000000000-7f0000001000 ---p 00000000 00:00 0\n"
        "7f0000001000-7f0000002000 rw-p 00000000 00:00 0\n"
        "7f0000002000-7f0000003000 r--p 00000000 08:01 99 /tmp/a file (deleted)\n"
    )
    regions = parse_maps(text)
    assert [(r.start, r.path) for r in regions] == [
        (0x55D0C0A00000, "/usr/bin/python3.11"),
        (0x7FFD1C000000, "[stack]"),
        (0x7F0000001000, ""),
        (0x7F0000002000, "/tmp/a file (deleted)"),
    ]


def test_bad_params_are_rejected() -> None:
    with pytest.raises(ParamError, match=r"^process: bytes\[0\]: expected an even number"):
        MOD.validate({"bytes": ["abc"]})
    with pytest.raises(ParamError, match=r"^process: content\[0\]: invalid regex"):
        MOD.validate({"content": ["\\N{DIGIT ONE}"]})  # fine on str, not on bytes
    with pytest.raises(ParamError, match=r"^process: exe_sha256\[0\]: expected 64 hex digits"):
        MOD.validate({"exe_sha256": ["abcd"]})
