"""Kernel confinement of operation children (agentd.confine), through the real runner and zygote.

The attacks come from test-only modules (``tests/support/confine_probe.py``) registered only in the
zygote these tests start: each tries, inside its confined child, what must be denied, and reports
the errno. Tests run as root, so every denial below is the confinement's, not the file modes'.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentd import confine
from agentd.runner import Zygote
from modules.base import CollectingContext, LimitReached
from modules.registry import all_modules, get_module
from tests.support import cli
from tests.support.agents import start_agent, stop_agent, write_agent
from tests.support.confine_probe import ProbeModule
from tests.support.confined_run import fresh_zygote, operation
from tests.support.mod_child import running_child
from tests.support.protocol_keys import KeyFactory

__all__ = ["fresh_zygote"]  # a fixture: used by its name

pytestmark = pytest.mark.skipif(
    not confine.support().landlock or not confine.support().seccomp,
    reason=f"this kernel lacks a layer: {confine.support().missing}",
)
REPO = Path(__file__).resolve().parent.parent
DATA_ROOT = REPO / "tests" / "data" / "modules" / "root"


@pytest.fixture
def probes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Operations go to a fresh zygote that also knows the probe modules."""
    monkeypatch.setattr(Zygote, "entry", "tests.support.confine_probe")
    yield
    if Zygote._current is not None:
        Zygote._current.close()


@pytest.fixture
def targets(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The root, a file in /tmp outside it, a file outside both, and a listening port."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "readable").write_text("inside\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "file").write_text("elsewhere\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("secret\n")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield {
            "root": root,
            "params": {
                "outside": str(outside / "secret"),
                "tmpfile": str(elsewhere / "file"),
                "agent_pid": os.getpid(),
                "port": server.getsockname()[1],
            },
        }
    assert str(tmp_path).startswith("/tmp/")


async def probe(module: str, targets: dict[str, Any]) -> dict[str, str]:
    outcome, rows = await operation(module, targets["params"], targets["root"])
    assert outcome.status == "ok", outcome
    return {row["attempt"]: row["outcome"] for row in rows}


#: What the probe finds in a child confined by every layer: reading below the root works, the
#: rest is denied (EACCES for the filesystem, as Landlock says it; EPERM for the rest).
DENIED_EVERYWHERE = {
    "read_root": "ok",
    **{f"{act}_{where}": "EACCES" for act in ("create", "write", "truncate", "rename", "unlink")
       for where in ("root", "tmp")},
    "exec": "EPERM",
    "tcp_connect": "EPERM",
    "tcp_bind": "EPERM",
    "udp_socket": "EPERM",
    "read_outside": "EACCES",
    "read_outside_via_proc_root": "EACCES",
    "ptrace_agent": "EPERM",
    "read_agent_memory": "EACCES",
    "signal_agent": "EPERM",
    "raise_rlimit": "EPERM",
    "setuid_0": "EPERM",
}  # fmt: skip


def untouched(targets: dict[str, Any]) -> bool:
    root, tmpfile = targets["root"], Path(targets["params"]["tmpfile"])
    return (
        sorted(p.name for p in root.iterdir()) == ["readable"]
        and (root / "readable").read_text() == "inside\n"
        and sorted(p.name for p in tmpfile.parent.iterdir()) == ["file"]
        and tmpfile.read_text() == "elsewhere\n"
    )


async def test_a_confined_child_reads_below_its_root_and_does_nothing_else(
    probes: None, targets: dict[str, Any]
) -> None:
    assert await probe("probe", targets) == DENIED_EVERYWHERE
    assert untouched(targets)


async def test_landlock_alone_denies_writes_tcp_reads_outside_and_signals(
    probes: None, targets: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With seccomp hidden, Landlock (with no-new-privs and caps) still holds the filesystem,
    TCP, the agent's signals and ptrace; UDP and setuid(0) as root are seccomp's to deny."""
    monkeypatch.setenv(confine.UNAVAILABLE_ENV, "seccomp")
    assert await probe("probe", targets) == {
        **DENIED_EVERYWHERE,
        "exec": "EACCES",  # no execute right
        "tcp_connect": "EACCES",
        "tcp_bind": "EACCES",
        "udp_socket": "ok",
        "setuid_0": "ok",  # uid 0 to uid 0: a no-op without seccomp
    }
    assert untouched(targets)


async def test_seccomp_alone_denies_writes_exec_sockets_but_not_reads_outside(
    probes: None, targets: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With Landlock hidden, the seccomp filter still stops every change, exec and socket; reads
    outside the root are only Landlock's to deny."""
    monkeypatch.setenv(confine.UNAVAILABLE_ENV, "landlock")
    assert await probe("probe", targets) == {
        **DENIED_EVERYWHERE,
        "read_outside": "ok",
        "read_outside_via_proc_root": "ok",
    }
    assert untouched(targets)


async def test_a_module_inspecting_processes_is_confined_as_every_other(
    probes: None, targets: dict[str, Any]
) -> None:
    """Like ``process``, ``netstat`` and ``yara``: CAP_SYS_PTRACE kept, and Landlock all the
    same, so it cannot read outside the root, nor open the agent's memory."""
    assert await probe("probe_processes", targets) == DENIED_EVERYWHERE
    assert untouched(targets)


def _searches(child: dict[str, Any], marker: str) -> dict[str, tuple[dict[str, Any], Any]]:
    """Per module inspecting processes: a search the child answers, and how its row says so."""
    return {
        "process": (
            {"cmdline": ["--role=attacked"], "content": [marker]},
            lambda row: (row["pid"], row["matched"]) == (child["pid"], ["cmdline", "content"]),
        ),
        "netstat": (
            {"listening_port": [child["tcp_port"]]},
            lambda row: (row["pid"], row["local_addr"]) == (child["pid"], "127.0.0.1"),
        ),
        "yara": (
            {
                "rules": f'rule m {{ strings: $a = "{marker}" condition: $a }}',
                "pids": [child["pid"]],
            },
            lambda row: (row["pid"], row["rules"][0]["rule"]) == (child["pid"], "m"),
        ),
    }


@pytest.mark.parametrize("name", ["process", "netstat", "yara"])
async def test_the_process_modules_children_are_confined_and_still_find_their_matches(
    probes: None, targets: dict[str, Any], name: str
) -> None:
    """In the child of ``process``, ``netstat`` and ``yara`` themselves (their needs, params and
    snapshot), every attack is denied, the agent's memory included, and the search that
    follows still finds the process under investigation."""
    marker = "spyglass-attacked-" + os.urandom(8).hex()
    with running_child(marker, "--role=attacked") as child:
        search, found = _searches(child, marker)[name]
        module = get_module(name)
        assert module is not None
        params = {**module.validate(search), **targets["params"]}
        outcome, rows = await operation(f"probe_{name}", params, targets["root"])
    assert outcome.status == "ok", outcome
    attempts = {r["attempt"]: r["outcome"] for r in rows if r.get("attempt")}
    assert attempts == DENIED_EVERYWHERE
    assert [found(r) for r in rows if not r.get("attempt")].count(True) == 1, rows
    assert outcome.errors == []
    assert untouched(targets)


async def test_only_the_declared_tool_may_be_executed(probes: None, tmp_path: Path) -> None:
    outcome, rows = await operation("probe_exec", {}, tmp_path)
    assert outcome.status == "ok", outcome
    assert {r["tool"]: r["outcome"] for r in rows} == {
        "/bin/true": "0",
        "/bin/ls": "EACCES",
        "memfd": "EPERM",  # no anonymous file to execute: Landlock would not see it
    }


@pytest.mark.skipif(os.geteuid() != 0, reason="only root holds the capabilities to drop")
async def test_the_zygote_confines_itself_before_forking(
    fresh_zygote: None, tmp_path: Path
) -> None:
    """No-new-privs, a bounding set of two capabilities and the common filter, inherited by
    every child whatever its module."""
    outcome, _ = await operation("agent", {}, tmp_path)
    assert outcome.status == "ok", outcome
    status = _proc_status(Zygote.current().process.pid)
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"
    assert int(status["CapBnd"], 16) == (1 << 2 | 1 << 19)  # DAC_READ_SEARCH, SYS_PTRACE
    assert int(status["CapPrm"], 16) == (1 << 2 | 1 << 19)


def _proc_status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


async def test_the_agent_module_reports_the_confinement_in_force(
    fresh_zygote: None, tmp_path: Path
) -> None:
    outcome, [row] = await operation("agent", {}, tmp_path)
    assert outcome.status == "ok", outcome
    abi = confine.support().landlock
    assert row["confinement"] == f"landlock-v{abi} seccomp no-new-privs caps"


async def test_without_the_kernel_layers_operations_run_and_say_so(
    fresh_zygote: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: Any
) -> None:
    monkeypatch.setenv(confine.UNAVAILABLE_ENV, "1")
    for _ in range(2):
        outcome, [row] = await operation("agent", {}, tmp_path)
        assert outcome.status == "ok", outcome
    knob = confine.UNAVAILABLE_ENV
    assert row["confinement"].startswith(
        f"no-new-privs caps; no landlock: disabled by {knob}; no seccomp: disabled by {knob}"
    )
    logged = capfd.readouterr().err.splitlines()
    assert (
        logged.count(f"spyglass-agentd: confinement unavailable: landlock: disabled by {knob}") == 1
    )
    assert (
        logged.count(f"spyglass-agentd: confinement unavailable: seccomp: disabled by {knob}") == 1
    )


async def test_require_confinement_refuses_what_cannot_be_confined(
    fresh_zygote: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(confine.UNAVAILABLE_ENV, "1")
    (tmp_path / "planted").write_text("x")
    params = get_module("file").validate({"paths": ["/"]})  # type: ignore[union-attr]
    outcome, rows = await operation("file", params, tmp_path, require_confinement=True)
    knob = confine.UNAVAILABLE_ENV
    assert (outcome.status, rows) == ("error", [])
    assert outcome.errors == [
        "refused: require_confinement is set and "
        f"landlock: disabled by {knob}; seccomp: disabled by {knob}"
    ]
    outcome, rows = await operation("file", params, tmp_path)  # not required: it runs
    assert outcome.status == "ok" and [r["path"] for r in rows] == ["/planted"]


async def test_a_replaced_root_gets_a_ruleset_of_its_own(
    fresh_zygote: None, tmp_path: Path
) -> None:
    """The zygote keeps each module's ruleset per root: a root folder replaced since (a new
    inode) is read, not the old one; a missing root refuses the operation."""
    root = tmp_path / "root"
    params = get_module("file").validate({"paths": ["/"]})  # type: ignore[union-attr]
    for name in ("first", "second"):
        if root.exists():
            shutil.rmtree(root)
        root.mkdir()
        (root / name).write_text(name)
        outcome, rows = await operation("file", params, root)
        assert outcome.status == "ok" and [r["path"] for r in rows] == [f"/{name}"], outcome
    shutil.rmtree(root)
    outcome, rows = await operation("file", params, root)
    assert (outcome.status, rows) == ("error", [])
    assert outcome.errors == [
        f"refused: cannot confine the module's process: [Errno 2] No such file or directory: "
        f"'{root}'"
    ]


def test_spyglass_run_agent_shows_why_it_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = KeyFactory()
    try:
        ida = keys.investigator("Ida")
        directory = Path(keys.home())
        write_agent(
            directory,
            investigators={"ida": ida.public},
            acl={"default": {"minimum_weight": 1, "investigators": {ida.fingerprint: 1}}},
            limits={"require_confinement": True},
        )
        monkeypatch.setenv(confine.UNAVAILABLE_ENV, "1")  # the agent inherits it
        agent = start_agent(directory)
        try:
            public = agent.host_key.export_public_key().decode().strip()
            (directory / "known_hosts").write_text(f"[{agent.host}]:{agent.port} {public}\n")
            inventory = directory / "inventory.toml"
            inventory.write_text(
                'defaults = { known_hosts = "known_hosts", client_keys = ["console_key"] }\n'
                f'[[hosts]]\nname = "h"\naddress = "{agent.host}"\nport = {agent.port}\n'
            )
            env = {
                **os.environ,
                "GNUPGHOME": str(ida.home),
                "SPYGLASS_INVENTORY": str(inventory),
                "SPYGLASS_STORE": str(tmp_path / "results.db"),
            }
            done = cli.spyglass(env, "run", "agent", "-t", "all", "--json")
            [host] = [e for e in cli.events(done.stdout) if e["event"] == "host"]
            knob = confine.UNAVAILABLE_ENV
            assert (host["status"], host["detail"]) == (
                "error",
                "refused: require_confinement is set and "
                f"landlock: disabled by {knob}; seccomp: disabled by {knob}",
            )
            assert (
                "agentd: confinement unavailable: landlock"
                in (directory / "agentd.log").read_text()
            )
        finally:
            stop_agent(agent)
    finally:
        keys.close()


# --- Every shipped module, confined ----------------------------------------------------------


#: Modules whose rows describe the live host, which changes between two runs.
LIVE = {"agent", "netstat", "process", "ping", "timedrift"}


@pytest.mark.parametrize("module", all_modules(), ids=lambda m: m.name)
async def test_each_shipped_example_runs_confined_as_in_place(
    fresh_zygote: None, module: Any
) -> None:
    """The example through the agent's confined child gives what it gives run in place."""
    params = module.validate(module.example)
    outcome, rows = await operation(module.name, params, DATA_ROOT)
    assert outcome.status in ("ok", "limit"), outcome
    if module.name in LIVE:
        assert outcome.errors == []
        return
    ctx = CollectingContext(root=str(DATA_ROOT))
    with contextlib.suppress(LimitReached):
        module.run(params, ctx)
    assert (rows, outcome.errors) == (ctx.rows, ctx.errors)


async def test_process_memory_search_runs_confined(fresh_zygote: None, tmp_path: Path) -> None:
    marker = "spyglass-confined-" + os.urandom(8).hex()
    with running_child(marker, "--role=confined-test") as child:
        module = get_module("process")
        assert module is not None
        params = module.validate({"cmdline": ["--role=confined-test"], "content": [marker]})
        outcome, rows = await operation("process", params, tmp_path)
    assert outcome.status == "ok", outcome
    assert [(r["pid"], r["matched"]) for r in rows] == [(child["pid"], ["cmdline", "content"])]


async def test_netstat_names_socket_owners_confined(fresh_zygote: None, tmp_path: Path) -> None:
    with running_child("netstat-confined") as child:
        module = get_module("netstat")
        assert module is not None
        params = module.validate({"listening_port": [child["tcp_port"]]})
        outcome, rows = await operation("netstat", params, tmp_path)
    assert outcome.status == "ok", outcome
    # Other processes on this machine (labs of other runs) may listen on the same port number
    # on another 127.x address: only the child's own address is its own.
    owners = [(r["pid"], r["local_port"]) for r in rows if r["local_addr"] == "127.0.0.1"]
    assert owners == [(child["pid"], child["tcp_port"])]


#: Module tests that cannot pass in a confined child, and why.
NOT_CONFINABLE = {
    "tests/test_mod_pkg.py::test_rpm_is_asked_with_root":
        "its fake rpm is a shell script (not the declared rpm) that writes its argv to a file",
}  # fmt: skip


@pytest.mark.timeout(900)  # the modules' whole test files, on a loaded machine
def test_every_shipped_modules_own_tests_pass_confined() -> None:
    """The modules' own test files, unchanged, with every ``Module.run`` in a confined child
    (``tests/support/confined_modules.py``)."""
    files = sorted(
        str(p.relative_to(REPO))
        for pattern in ("test_mod_*.py", "test_modules_file_*.py", "test_modules_registry.py")
        for p in (REPO / "tests").glob(pattern)
    )
    deselect = [arg for test in NOT_CONFINABLE for arg in ("--deselect", test)]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist",
         "-p", "tests.support.confined_modules", "-p", "no:cacheprovider", *deselect, *files],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    tail = done.stdout[-3000:]
    assert done.returncode == 0, tail
    assert " passed" in tail and "failed" not in tail and "error" not in tail, tail


def test_syscall_numbers_match_the_c_headers(tmp_path: Path) -> None:
    if shutil.which("gcc") is None:
        pytest.skip("no gcc to read the C headers with")
    names = sorted(confine.SYSCALLS)
    source = "#include <stdio.h>\n#include <sys/syscall.h>\nint main(void) {\n"
    source += "".join(f'#ifdef SYS_{n}\nprintf("{n} %d\\n", SYS_{n});\n#endif\n' for n in names)
    (tmp_path / "nr.c").write_text(source + "return 0;\n}\n")
    subprocess.run(["gcc", "-o", str(tmp_path / "nr"), str(tmp_path / "nr.c")], check=True)
    found = dict(
        (name, int(nr))
        for name, nr in (line.split() for line in subprocess.run(
            [str(tmp_path / "nr")], capture_output=True, text=True, check=True
        ).stdout.splitlines())
    )  # fmt: skip
    headers_lag = {"fchmodat2"}  # newer than some libc headers; checked when they know it
    assert set(names) - set(found) <= headers_lag
    assert {n: found[n] for n in found} == {n: confine.SYSCALLS[n] for n in found}


def test_probe_is_not_in_the_shipped_registry() -> None:
    assert get_module("probe") is None and ProbeModule.name == "probe"
    assert json.dumps([m.name for m in all_modules()]).count("probe") == 0


@pytest.mark.parametrize("module", all_modules(), ids=lambda m: m.name)
def test_each_module_declares_only_known_needs(module: Any) -> None:
    needs = module.needs
    assert all(os.path.isabs(p) for p in needs.read)
    assert set(needs.sockets) <= {"unix", "netlink"}
    assert set(needs.network) <= {"tcp", "udp"}
    if needs.network:  # outbound network is the need of these two only
        assert module.name in {"ping", "timedrift"}
    assert not (needs.execute and needs.processes), "exec is allowed only under Landlock"


def _in_landlocked_child(before: Any, after: Any) -> dict[str, Any]:
    """``before()`` in a forked child, then Landlock (read-only beneath /proc), then
    ``after(before's result)``; what ``after`` returns, through a pipe."""
    read_fd, write_fd = os.pipe()
    kid = os.fork()
    if kid == 0:
        code = 0
        try:
            os.close(read_fd)
            taken = before()
            confine.apply(get_module("file"), "/proc")  # type: ignore[arg-type]
            assert confine.in_force()[0].startswith("landlock-v"), confine.in_force()
            os.write(write_fd, json.dumps(after(taken)).encode())
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 70
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        data = pipe.read()
    assert os.waitstatus_to_exitcode(os.waitpid(kid, 0)[1]) == 0
    return json.loads(data)  # type: ignore[no-any-return]


def _errno_of(attempt: Any) -> str:
    try:
        attempt()
    except OSError as err:
        return errno.errorcode[err.errno or 0]
    return "ok"


def test_landlock_keeps_what_was_opened_before_it_and_hides_other_processes_after() -> None:
    """The kernel fact the process modules' confinement rests on: Landlock's ptrace scoping
    checks /proc/PID/mem and maps when they are opened and the exe and fd links on each
    readlink; descriptors opened before landlock_restrict_self stay readable."""
    marker = "spyglass-landlock-" + os.urandom(8).hex()
    with running_child(marker) as child:
        pid = child["pid"]

        def before() -> tuple[int, int]:
            return (os.open(f"/proc/{pid}/maps", os.O_RDONLY), os.open(f"/proc/{pid}/mem", 0))

        def after(fds: tuple[int, int]) -> dict[str, Any]:
            maps, mem = fds
            found = False
            for line in _read_fd(maps).decode().splitlines():
                span, perms = line.split()[:2]
                start, end = (int(x, 16) for x in span.split("-"))
                if perms.startswith("r") and not line.endswith(("[vvar]", "[vsyscall]")):
                    with contextlib.suppress(OSError):
                        found = found or marker.encode() in os.pread(mem, end - start, start)
            return {
                "marker_in_pre_opened_mem": found,
                "open_mem": _errno_of(lambda: os.open(f"/proc/{pid}/mem", os.O_RDONLY)),
                "open_maps": _errno_of(lambda: os.open(f"/proc/{pid}/maps", os.O_RDONLY)),
                "readlink_exe": _errno_of(lambda: os.readlink(f"/proc/{pid}/exe")),
                "readlink_fd": _errno_of(lambda: os.readlink(f"/proc/{pid}/fd/0")),
                "read_cmdline": _errno_of(lambda: _read_bytes(f"/proc/{pid}/cmdline")),
                "readlink_own_exe": _errno_of(lambda: os.readlink("/proc/self/exe")),
            }

        assert _in_landlocked_child(before, after) == {
            "marker_in_pre_opened_mem": True,
            "open_mem": "EACCES",
            "open_maps": "EACCES",
            "readlink_exe": "EACCES",
            "readlink_fd": "EACCES",
            "read_cmdline": "ok",  # no ptrace check: names and command lines stay readable
            "readlink_own_exe": "ok",  # this process is in its own domain
        }


def _read_fd(fd: int) -> bytes:
    """All of a /proc file (which hands out about a page per read)."""
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()
