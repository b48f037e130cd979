"""The snapshot a process-inspecting module takes before Landlock (modules.proc_snapshot), and what
the modules make of it: only what a search needs is opened, never the agent's own memory, a
bounded number of descriptors with one clear error past the bound, and YARA's offsets in process
memory as the process's own addresses."""

from __future__ import annotations

import os
import resource
import secrets
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from modules.base import CollectingContext
from modules.proc_snapshot import RESERVE, Wants, take
from modules.process import ProcessModule
from modules.yara import YaraModule
from tests.support.mod_child import running_child

MARKER = "spyglass-snapshot-" + secrets.token_hex(8)
ROLE = "--role=snapshot-test-" + secrets.token_hex(4)


@pytest.fixture(scope="module")
def child() -> Iterator[dict[str, Any]]:
    with running_child(MARKER, ROLE) as info:
        yield info


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_only_what_is_wanted_is_opened(child: dict[str, Any]) -> None:
    before = open_fds()
    links = take(Wants(exe=True))
    assert open_fds() == before  # links only: no descriptor held
    assert links.processes[child["pid"]].exe == os.path.realpath(sys.executable)
    assert links.processes[child["pid"]].fd("mem") is None
    memory = take(Wants(maps=True, mem=True))
    try:
        handles = memory.processes[child["pid"]]
        assert handles.link is None  # not wanted
        assert handles.fd("maps") is not None and handles.fd("mem") is not None
        assert open_fds() > before
    finally:
        memory.close()
    assert open_fds() == before


def test_the_agents_own_memory_is_never_opened() -> None:
    snapshot = take(Wants(maps=True, mem=True))
    try:
        for pid in (os.getpid(), os.getppid()):
            assert pid in snapshot.protected
            assert snapshot.processes[pid].fds == {}
    finally:
        snapshot.close()


def test_socket_owners_are_taken_from_the_fd_links(child: dict[str, Any]) -> None:
    snapshot = take(Wants(sockets=True))
    owners = {pid for pairs in snapshot.sockets.values() for pid, _fd in pairs}
    assert child["pid"] in owners
    assert snapshot.protected == frozenset()  # nothing opened: nothing to protect


def _forked(work: Any) -> Any:
    """``work()`` in a grandchild, as the agent runs a module (its middle process stands for the
    zygote, so the test's own children are not the agent's), rlimits changed there only; its
    result, or its exception, through a pipe."""
    import pickle

    read_fd, write_fd = os.pipe()
    middle = os.fork()
    if middle == 0:
        if os.fork() == 0:
            try:
                result: Any = work()
            except Exception as err:
                result = err
            os.write(write_fd, pickle.dumps(result))
            os._exit(0)
        os.wait()
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        data = pipe.read()
    os.waitpid(middle, 0)
    result = pickle.loads(data)
    if isinstance(result, Exception):
        raise result
    return result


def test_past_the_descriptor_limit_one_error_says_so_and_names_still_match(
    child: dict[str, Any],
) -> None:
    """Two processes' worth of descriptors: the child (a recent pid) gets none, so its memory is
    not searched, it still matches by command line, and one error says why."""
    module = ProcessModule()
    params = module.validate({"cmdline": [ROLE], "content": [MARKER], "match_any": True})

    def work() -> tuple[list[dict[str, Any]], list[str], int]:
        limit = open_fds() + RESERVE + 4
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
        ctx = CollectingContext()
        module.run(params, ctx)
        return ctx.rows, ctx.errors, limit

    rows, errors, limit = _forked(work)
    assert [(r["pid"], r["matched"]) for r in rows] == [(child["pid"], ["cmdline"])]
    [error] = [e for e in errors if "descriptor" in e]
    assert error.endswith(f"the descriptor limit (RLIMIT_NOFILE {limit}) was reached")


RULES = f'rule held {{ strings: $a = "{MARKER}" condition: $a }}'


def test_yara_reports_offsets_as_the_processs_own_addresses(child: dict[str, Any]) -> None:
    module = YaraModule()
    ctx = CollectingContext()
    module.run(module.validate({"rules": RULES, "pids": [child["pid"]]}), ctx)
    [row] = ctx.rows
    [string] = row["rules"][0]["strings"]
    assert string["count"] >= 1
    with open(f"/proc/{child['pid']}/mem", "rb", buffering=0) as mem:
        for address in string["offsets"]:
            mem.seek(address)
            assert mem.read(len(MARKER)) == MARKER.encode()


def test_yara_says_how_much_memory_max_process_size_left_out(child: dict[str, Any]) -> None:
    module = YaraModule()
    ctx = CollectingContext()
    params = module.validate({"rules": RULES, "pids": [child["pid"]], "max_process_size": 4096})
    stats = module.run(params, ctx)
    assert stats["bytes_scanned"] == 4096 and stats["processes_scanned"] == 1
    [error] = ctx.errors
    assert error.startswith(f"pid {child['pid']}: ") and error.endswith(
        " bytes past max_process_size unread"
    )
