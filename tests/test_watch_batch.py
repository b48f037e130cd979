"""A watcher's batch, as the agent's child runs it: the file module's filters, then the rules the
agent compiled when it armed the watcher (loaded, never compiled again per batch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modules import fswatch
from modules.base import CollectingContext
from modules.fswatch import COMPILED, FswatchModule, compiled_rules
from protocol.errors import ParamError
from tests.support.confined_run import operation

RULES = """
rule php_webshell { strings: $a = "eval(base64_decode(" condition: $a }
rule php_tag { strings: $a = "<?php" condition: $a }
"""
MOD = FswatchModule()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    www = tmp_path / "srv" / "www"
    www.mkdir(parents=True)
    (www / "shell.php").write_bytes(b"<?php eval(base64_decode($_POST['x'])); ?>\n")
    (www / "index.php").write_bytes(b"<?php echo 'hello'; ?>\n")
    (www / "notes.txt").write_bytes(b"eval(base64_decode(\n")
    return tmp_path


def batch(rules: str | None) -> dict[str, Any]:
    """The params of a batch as ``agentd.watch`` sends them: the watcher's, changed paths, and
    its rules compiled once."""
    given = {"paths": ["/srv/www"], "name": [r"\.php$"]}
    params = MOD.validate({**given, "rules": rules} if rules else given)
    changed = ["/srv/www/shell.php", "/srv/www/index.php", "/srv/www/notes.txt"]
    return {**params, "paths": changed, COMPILED: compiled_rules(rules) if rules else None}


def test_a_batch_matches_the_rules_compiled_when_armed(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = batch(RULES)

    def no_compiling(_source: str) -> None:
        raise AssertionError("a batch compiled the rules again")

    monkeypatch.setattr(fswatch, "compile_rules", no_compiling)
    ctx = CollectingContext(root=str(root))
    stats = MOD.run(params, ctx)
    assert [(r["path"], r["rules"], r["matched"]) for r in ctx.rows] == [
        ("/srv/www/shell.php", ["php_tag", "php_webshell"], ["name"]),
        ("/srv/www/index.php", ["php_tag"], ["name"]),
    ]
    assert stats["yara_scanned"] == 2  # notes.txt failed the name filter: never scanned


def test_without_rules_every_file_passing_the_filters_alerts(root: Path) -> None:
    ctx = CollectingContext(root=str(root))
    MOD.run(batch(None), ctx)
    assert sorted((r["path"], r["rules"]) for r in ctx.rows) == [
        ("/srv/www/index.php", []),
        ("/srv/www/shell.php", []),
    ]


def test_an_actions_params_carry_no_batch(root: Path) -> None:
    """An ``fswatch`` action is answered by the agent; its params alone (no compiled rules,
    which no action can give: unknown parameters are refused) match nothing in a child."""
    ctx = CollectingContext(root=str(root))
    assert MOD.run(MOD.validate({"paths": ["/srv/www"], "rules": RULES}), ctx) == {"rows": 0}
    assert ctx.rows == []
    with pytest.raises(ParamError, match=COMPILED):
        MOD.validate({"paths": ["/srv/www"], COMPILED: compiled_rules(RULES)})


async def test_a_batch_with_rules_runs_confined(root: Path) -> None:
    outcome, rows = await operation("fswatch", batch(RULES), root)
    assert outcome.status == "ok", outcome
    assert [(r["path"], r["rules"]) for r in rows] == [
        ("/srv/www/shell.php", ["php_tag", "php_webshell"]),
        ("/srv/www/index.php", ["php_tag"]),
    ]
