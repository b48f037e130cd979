"""Properties every registered module must have, whoever wrote it."""

from __future__ import annotations

import argparse
import json

import pytest

from modules.base import NAME_RE, Module
from modules.registry import all_modules, get_module

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
    assert module.params_from_cli(parser.parse_args(argv)) == {p.name: ["/"] for p in required}
