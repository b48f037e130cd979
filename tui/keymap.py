"""Key bindings from the user's config: ``$XDG_CONFIG_HOME/spyglass/keymap.toml``.

    [keymap]
    "app.history" = "f6"
    "compose.launch" = "ctrl+enter,ctrl+l"

Keys are binding ids (the help screen lists them), values are Textual key names, comma separated
for several keys. The app passes the table to ``App.set_keymap``.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path


def keymap_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "spyglass" / "keymap.toml"


def load_keymap(path: Path | None = None) -> tuple[dict[str, str], str | None]:
    """The keymap and, if the file is unusable, why (a missing file is no error)."""
    path = path or keymap_path()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        return {}, f"{path}: {err}"
    table = data.get("keymap", {})
    if not isinstance(table, dict):
        return {}, f'{path}: [keymap] must be a table of binding id = "key"'
    keymap = {k: v.strip() for k, v in table.items() if isinstance(v, str) and v.strip()}
    bad = sorted(set(table) - set(keymap))
    if bad:
        return keymap, f"{path}: ignored {', '.join(bad)}: each value must be a key name string"
    return keymap, None
