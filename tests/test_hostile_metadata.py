"""Hostile YARA metadata and process names reach the console's outputs harmlessly.

A compromised host chooses its process names and command lines (``prctl(PR_SET_NAME)``, argv);
YARA metadata comes from shared rule sets that may carry hostile strings. Both travel in result
rows: the text cell must show them escaped on one line, and the JSON line must stay valid JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from console.results.text import cell, json_line
from modules.base import CollectingContext
from modules.registry import get_module

HOSTILE = "\x1b]0;pwned\x07[red]x[/]\x1b[2J\u202eevil"


def _columns(name: str) -> list[str]:
    module = get_module(name)
    assert module is not None
    return [c.name for c in module.columns]


def _assert_harmless(row: dict[str, object], module: str) -> None:
    kinds = {c.name: c.kind for c in get_module(module).columns}  # type: ignore[union-attr]
    for name, value in row.items():
        text = cell(value, kinds[name])
        assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
        assert "\n" not in text
    decoded = json.loads(json_line({"event": "match", "data": row}))
    assert decoded["data"] == json.loads(json.dumps(row))


def test_yara_meta_with_escapes_and_markup(tmp_path: Path) -> None:
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "dropper.bin").write_bytes(b"MZ...evil-marker...")
    meta = HOSTILE.replace("\\", "\\\\").replace('"', '\\"').replace("\x1b", "\\x1b")
    rules = (
        'rule planted : tag1 { meta: note = "' + meta + '" '
        'strings: $a = "evil-marker" condition: $a }'
    )
    module = get_module("yara")
    assert module is not None
    params = module.validate({"rules": rules, "paths": ["/srv"]})
    ctx = CollectingContext(root=str(tmp_path), columns=_columns("yara"))
    module.run(params, ctx)
    assert len(ctx.rows) == 1 and ctx.rows[0]["rules"][0]["meta"]["note"] == HOSTILE
    _assert_harmless(ctx.rows[0], "yara")


def test_process_name_with_escapes_and_markup() -> None:
    code = (
        "import ctypes, sys, time\n"
        "ctypes.CDLL(None).prctl(15, sys.argv[1].encode()[:15], 0, 0, 0)\n"
        "print('named', flush=True)\n"
        "time.sleep(30)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code, HOSTILE], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"named\n"
        module = get_module("process")
        assert module is not None
        params = module.validate({"cmdline": ["pwned"]})
        ctx = CollectingContext(columns=_columns("process"))
        module.run(params, ctx)
        rows = [r for r in ctx.rows if r["pid"] == child.pid]
        assert rows and "\x1b" in rows[0]["cmdline"]  # the hostile bytes really arrived
        for row in rows:
            _assert_harmless(row, "process")
    finally:
        child.kill()
        child.wait()
