"""The layers of DESIGN §1 at run time: headless packages never load textual, pure ones never
asyncssh (the same layers are checked statically by import-linter in `make lint`)."""

from __future__ import annotations

import ast
import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from protocol.frames import encode_frame
from tests.support.agents import converse, run_frames, start_agent, stop_agent, write_agent

IMPORTS = {
    "protocol": [
        "protocol.action",
        "protocol.envelope",
        "protocol.signing",
        "protocol.verify",
        "protocol.frames",
        "protocol.messages",
        "protocol.acl",
        "protocol.transport",
        "protocol.agent_config",
    ],
    "inventory": ["inventory"],
    "modules": ["modules.registry"],  # plus every registered module, loaded below
    "agentd": ["agentd.cli", "agentd.agent", "agentd.server"],
    "console": [
        "console.cli.main",
        "console.cli.demo",
        "console.fanout.dispatch",
        "console.fanout.shard",
        "console.lab.local",
        "console.results.store",
        "console.runbook.run",
    ],
    "spyglass_cli": ["spyglass_cli.main"],  # the TUI loads only when a command asks for it
}
FORBIDDEN = {
    "protocol": {"asyncssh", "textual", "inventory", "modules", "agentd", "console", "tui"},
    "inventory": {"asyncssh", "textual", "modules", "agentd", "console", "tui"},
    "modules": {"asyncssh", "textual", "agentd", "console", "tui"},
    "agentd": {"textual", "console", "tui"},
    "console": {"textual", "agentd", "tui", "spyglass_cli"},
    "spyglass_cli": {"textual", "agentd", "tui"},
}


def loaded_after(imports: list[str]) -> set[str]:
    load_modules = "modules.registry" in imports or "agentd.agent" in imports
    code = (
        "import importlib, json, sys\n"
        f"for name in {imports!r}: importlib.import_module(name)\n"
        + ("from modules.registry import all_modules; all_modules()\n" if load_modules else "")
        + "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(done.stdout))


@pytest.mark.parametrize("package", sorted(IMPORTS))
def test_layer_imports_nothing_above_it(package: str) -> None:
    loaded = loaded_after(IMPORTS[package])
    assert not loaded & FORBIDDEN[package], f"{package} pulled in {loaded & FORBIDDEN[package]}"


def loaded_by(code: str, *names: str) -> list[str]:
    """Which of ``names`` (modules, and packages with all below them) a fresh interpreter holds
    after running ``code``."""
    probe = (
        f"{code}\nimport json, sys\nnames = {names!r}\n"
        "held = [m for m in sys.modules if m in names or m.split('.')[0] in names]\n"
        "print(json.dumps(sorted(held)))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return list(json.loads(done.stdout))


def test_the_zygote_loads_no_threading() -> None:
    """Every operation child is a fork of the zygote, and each at-fork hook of a loaded module
    (threading's, and logging's through asyncio) runs in every child: 0.6 ms of a 2 ms child."""
    watched = ("threading", "asyncio", "logging", "subprocess", "concurrent")
    assert loaded_by("import agentd.zygote", *watched) == []


def test_the_agent_server_loads_no_inventory_or_package_metadata() -> None:
    """Resident memory of every agent on the fleet: the inventory package (``enforce_target``
    loads it on first use) and the package metadata reader stay out."""
    code = "import agentd.server\nfrom modules.registry import all_modules\nall_modules()"
    assert loaded_by(code, "inventory", "importlib.metadata", "platform") == []


def test_a_one_agent_daemon_maps_no_system_openssl(tmp_path: Path) -> None:
    """agentd.lean: a one-agent process (every endpoint) loads neither libssl nor the system
    libcrypto, and still serves a handshake and a frame."""
    write_agent(tmp_path / "a", investigators={}, acl={"default": {"minimum_weight": 1}})
    agent = start_agent(tmp_path / "a")
    try:
        maps = Path(f"/proc/{agent.proc.pid}/maps").read_text()
        assert "libssl.so" not in maps and "/libcrypto.so" not in maps
        hello = encode_frame({"type": "hello", "versions": [1]})
        frames = asyncio.run(converse(agent, hello + run_frames({"action": {}})))
        assert [f["type"] for f in frames] == ["hello", "rejected"]
        assert frames[0]["agent"]["name"] == "a" and frames[1]["reason"] == "malformed"
    finally:
        stop_agent(agent)


def test_import_contracts_hold() -> None:
    """The static side of the layers (pyproject [tool.importlinter], also run by `make lint`):
    it sees the imports a run above never reaches, such as those inside functions."""
    lint = Path(sys.executable).with_name("lint-imports")
    root = Path(__file__).resolve().parent.parent  # where pyproject.toml is
    done = subprocess.run(
        [str(lint), "--no-cache"], capture_output=True, text=True, check=False, cwd=root
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def imported_names(source: Path) -> set[str]:
    """The modules a file imports, and ``module.name`` for each ``from module import name``
    (relative ones as written: ``.x``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            names.update([module, *(f"{module}.{alias.name}" for alias in node.names)])
    return names


def is_test_module(name: str) -> bool:
    """``tests.test_x``, ``tests.conftest``, or the same relative (``.test_x``) or bare."""
    parts = name.lstrip(".").split(".")
    if parts[0] == "tests":
        parts = parts[1:]
    return bool(parts) and (parts[0].startswith("test_") or parts[0] == "conftest")


def test_tests_import_shared_helpers_from_support_only() -> None:
    """Shared helpers live in tests/support/ and shared fixtures in conftest.py or there: a test
    module (or conftest) imported by another file drags its tests along and hides its helpers."""
    tests = Path(__file__).resolve().parent
    found = sorted(
        f"{source.relative_to(tests)}: {name}"
        for source in tests.rglob("*.py")
        for name in imported_names(source)
        if is_test_module(name)
    )
    assert not found, found
