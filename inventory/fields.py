"""Value kinds of the inventory: how one TOML key is checked, converted and written back.

Each field of the dataclasses in ``model.py`` names its kind in its metadata (``spec(PORT)``); the
loader and the dumper read those declarations, so a key's type, default and error text live in one
place instead of one hand-written check per key.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inventory.selector import KEYWORDS

#: Tags every host has without declaring them; a selector reads them from the host itself.
IMPLICIT_TAGS = frozenset({"name", "address"})

_HOST_CHARS = r"[A-Za-z0-9_.:\-]"
_HOST_NAME = re.compile(rf"{_HOST_CHARS}+")
_HOST_PATTERN = re.compile(rf"{_HOST_CHARS}*(?:\[\d+-\d+\])?{_HOST_CHARS}*")
_TAG_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")


class Invalid(Exception):
    """A value does not fit its kind; ``at`` extends the key path (``.env``, ``[2]``)."""

    def __init__(self, problem: str, at: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.at = at


@dataclass(frozen=True, slots=True)
class Kind:
    """Load turns a TOML value into the dataclass value (raising ``Invalid``); dump goes back.

    Both take the folder of the inventory file, against which relative paths are resolved.
    """

    load: Callable[[Any, Path], Any]
    dump: Callable[[Any, Path], Any]


def spec(kind: Kind, *, inherit: bool = False) -> dict[str, Any]:
    """Field metadata: the kind, and whether an absent key takes the ``[defaults]`` value."""
    return {"kind": kind, "inherit": inherit}


def show(value: object) -> str:
    """Render a TOML value for an error message the way it was written in the file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 40 else text[:36] + '..."'
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return f"a {type(value).__name__}"  # datetime, date, time


def key_part(key: object) -> str:
    """A key as it appears in a key path; odd keys are quoted so the message stays one line."""
    text = str(key)
    return text if _TAG_KEY.fullmatch(text) else json.dumps(text, ensure_ascii=False)


def _same(value: Any, base: Path) -> Any:
    return value


def scalar(
    expected: str,
    accept: Callable[[Any], bool],
    convert: Callable[[Any, Path], Any] = _same,
    dump: Callable[[Any, Path], Any] = _same,
) -> Kind:
    """A kind for one value: ``accept`` says whether it fits, ``expected`` says what would."""

    def load(value: Any, base: Path) -> Any:
        if not accept(value):
            raise Invalid(f"expected {expected}, got {show(value)}")
        return convert(value, base)

    return Kind(load, dump)


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _resolve(value: str, base: Path) -> Path:
    return base / Path(value).expanduser()


def _relative(value: Path, base: Path) -> str:
    """Write a path relative to the inventory folder when it lies inside it, so a lab can move."""
    try:
        return value.relative_to(base).as_posix()
    except ValueError:
        return str(value)


def _load_paths(value: Any, base: Path) -> tuple[Path, ...]:
    if not isinstance(value, list):
        raise Invalid(f"expected an array of paths, got {show(value)}")
    paths = []
    for i, item in enumerate(value):
        try:
            paths.append(PATH.load(item, base))
        except Invalid as err:
            raise Invalid(err.problem, f"[{i}]") from None
    return tuple(paths)


def _load_tags(value: Any, base: Path) -> dict[str, str]:
    if not isinstance(value, dict):
        raise Invalid(f"expected a table of strings, got {show(value)}")
    for key, item in value.items():
        at = f".{key_part(key)}"
        if key in IMPLICIT_TAGS:
            raise Invalid(f'reserved: every host has the tag "{key}" already', at)
        if not _TAG_KEY.fullmatch(key) or key in KEYWORDS:
            raise Invalid(
                "a tag name must be letters, digits, '_', '.', '-' (not starting with a digit, "
                "'.' or '-') and not a selector keyword (all, and, or, not, in)",
                at,
            )
        if not isinstance(item, str):
            raise Invalid(f"expected a string, got {show(item)}", at)
    return dict(value)


def _dump_tags(value: dict[str, str], base: Path) -> dict[str, str]:
    return {k: v for k, v in value.items() if k not in IMPLICIT_TAGS}


PORT = scalar("an integer 1-65535", lambda v: type(v) is int and 1 <= v <= 65535)
TEXT = scalar("a non-empty string", _is_text)
SECONDS = scalar(
    "a number of seconds above 0",
    lambda v: type(v) in (int, float) and v > 0 and math.isfinite(v),
    lambda v, base: float(v),
)
PATH = scalar("a path (a non-empty string)", _is_text, _resolve, _relative)
PATHS = Kind(_load_paths, lambda v, base: [_relative(p, base) for p in v])
TAGS = Kind(_load_tags, _dump_tags)
ADDRESS = scalar(
    "an address (a non-empty string without spaces)",
    lambda v: isinstance(v, str) and re.fullmatch(r"\S+", v) is not None,
)
HOST_NAME = scalar(
    "a host name (letters, digits, '.', '_', '-', ':')",
    lambda v: isinstance(v, str) and _HOST_NAME.fullmatch(v) is not None,
)
#: A host name that may hold one range, ``web-[01-40]``; the loader expands it.
HOST_PATTERN = scalar(
    "a host name (letters, digits, '.', '_', '-', ':'), optionally with one range like [01-40]",
    lambda v: isinstance(v, str) and v != "" and _HOST_PATTERN.fullmatch(v) is not None,
)
