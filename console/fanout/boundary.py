"""The console's boundary: what an agent sends is checked here before the store or any output.

A compromised agent can send any JSON the frame codec accepts: integers past SQLite's 64 bits,
values nested deep enough to exhaust Python's recursion in a printer, ``NaN`` and ``Infinity``
(which no JSON reader accepts back), strings as long as a frame. One such row must cost only that
host: the dispatcher drops the row, counts it, and the host ends ``error`` with the reason, while
every other host's rows go on as before.

The checks are iterative (a hostile depth cannot make the check itself recurse) and follow the
module's declared columns where a kind fixes the type (``int``, ``bool``).
"""

from __future__ import annotations

import math
from typing import Any

from console.results.output import column_kinds

#: SQLite's INTEGER, and every reader of the store and of ``--json``: signed 64 bits.
MIN_INT, MAX_INT = -(2**63), 2**63 - 1
#: Containers inside containers; module rows are flat, a ``json`` column a few levels deep.
MAX_DEPTH = 32
#: Characters of one string: a row always fits a frame (1 MiB), this only bounds what is held.
MAX_STRING = 1 << 20


def value_problem(value: Any) -> str | None:
    """Why ``value`` (any decoded JSON) cannot be kept, or None when it can."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, bool) or item is None:
            continue
        if isinstance(item, int):
            if not MIN_INT <= item <= MAX_INT:
                return "an integer outside 64 bits"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return "a NaN or infinite number"
        elif isinstance(item, str):
            if len(item) > MAX_STRING:
                return f"a string longer than {MAX_STRING} characters"
        elif isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                return f"values nested deeper than {MAX_DEPTH}"
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        else:
            return f"a value of type {type(item).__name__}"
    return None


def row_problem(module: str, data: dict[str, Any]) -> str | None:
    """Why a match row of ``module`` cannot be kept: a bad value anywhere, or a declared
    ``int`` or ``bool`` column holding something else."""
    if (problem := value_problem(data)) is not None:
        return problem
    for name, kind in column_kinds(module):
        value = data.get(name)
        if value is None:
            continue
        if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
            return f"column {name!r} is not an integer"
        if kind == "bool" and not isinstance(value, bool):
            return f"column {name!r} is not a boolean"
    return None
