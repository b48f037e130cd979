"""Properties every registered module must have, whoever wrote it."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from modules.base import NAME_RE, CollectingContext, LimitReached, Module
from modules.registry import all_modules, get_module
from tests.support.module_runs import fits

MODULES = all_modules()


def test_lookup_by_name() -> None:
    assert get_module("file") is not None
    assert get_module("no-such-module") is None
    assert MODULES[0].name == "file"


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.name)
def test_declaration_is_sound(module: Module) -> None:
    spec = module.spec()
    assert json.loads(json.dumps(spec)) == spec
    assert NAME_RE.fullmatch(module.name)
    names = [p.name for p in module.params]
    columns = [c.name for c in module.columns]
    assert len(set(names)) == len(names)
    assert columns and len(set(columns)) == len(columns)
    for name in names + columns:
        assert NAME_RE.fullmatch(name), name  # valid CLI flag, JSON key and CSS id
    assert module.summary and all(p.help for p in module.params)
    assert all(c.help for c in module.columns)
    assert module.describe().startswith(f"{module.name}: {module.summary}")


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.name)
def test_flags_build_a_parser(module: Module) -> None:
    parser = argparse.ArgumentParser(exit_on_error=False)
    module.add_arguments(parser)
    required = [p for p in module.params if p.required]
    argv = [arg for p in required for arg in (p.flag, "/")]
    expected = {p.name: ["/"] if p.repeatable else "/" for p in required}
    assert module.params_from_cli(parser.parse_args(argv)) == expected


DATA_ROOT = Path(__file__).parent / "data" / "modules" / "root"


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.name)
def test_example_runs_and_rows_have_exactly_the_declared_columns(module: Module) -> None:
    ctx = CollectingContext(root=str(DATA_ROOT), columns=[c.name for c in module.columns])
    try:
        stats = module.run(module.validate(module.example), ctx)
    except LimitReached as err:
        stats = err.stats
    assert stats and all(type(v) is int for v in stats.values())
    assert json.loads(json.dumps(ctx.rows)) == ctx.rows  # plain JSON, nothing else
    for row in ctx.rows:
        for c in module.columns:
            assert fits(c.kind, row[c.name]), (c.name, c.kind, row[c.name])


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.name)
def test_example_round_trips_through_the_command_line(module: Module) -> None:
    parser = argparse.ArgumentParser(exit_on_error=False)
    module.add_arguments(parser)
    given = module.params_from_cli(parser.parse_args(module.cli_args(module.example)))
    assert module.validate(given) == module.validate(module.example)


def test_file_example_finds_the_seeded_passwd() -> None:
    file = get_module("file")
    assert file is not None
    ctx = CollectingContext(root=str(DATA_ROOT))
    file.run(file.validate(file.example), ctx)
    assert [(r["path"], r["matched"]) for r in ctx.rows] == [("/etc/passwd", ["name"])]
    assert ctx.rows[0]["sha256"] and len(ctx.rows[0]["sha256"]) == 64


def test_modules_stay_in_their_layer() -> None:
    """modules/ sits below agentd, console and tui, and loads no heavy import on its own."""
    code = (
        "import sys, modules.registry as r; r.all_modules(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'asyncssh', 'textual', 'agentd', 'console', 'tui', 'yara', 'psutil'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
