"""Privacy mode: the agent masks paths and remote addresses before any row leaves it.

Which columns are masked comes from the modules' own declarations (column kinds ``path`` and
``addr``), so a new module is covered by declaring its columns, not by editing this file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modules.registry import get_module

MASK = "<masked>"
MASKED_KINDS = frozenset({"path", "addr"})

Row = dict[str, Any]


def row_masker(module_name: str) -> Callable[[Row], Row]:
    """A function replacing the module's path and address columns with ``MASK``."""
    module = get_module(module_name)
    masked = {c.name for c in module.columns if c.kind in MASKED_KINDS} if module else set()

    def mask(row: Row) -> Row:
        return {k: (MASK if k in masked and v not in (None, "") else v) for k, v in row.items()}

    return mask
