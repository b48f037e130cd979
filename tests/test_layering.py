"""The layers of DESIGN §1: headless packages never load textual, pure ones never asyncssh."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

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
    "console": ["console.cli", "console.dispatch", "console.lab", "console.store"],
}
FORBIDDEN = {
    "protocol": {"asyncssh", "textual", "inventory", "modules", "agentd", "console", "tui"},
    "inventory": {"asyncssh", "textual", "modules", "agentd", "console", "tui"},
    "modules": {"asyncssh", "textual", "agentd", "console", "tui"},
    "agentd": {"textual", "console", "tui"},
    "console": {"textual", "agentd", "tui"},
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
