"""The ``file`` module: find files by name, path, size, age, mode, content or digest."""

from __future__ import annotations

from typing import Any

from modules.base import Module, RunContext
from modules.file.declaration import COLUMNS, PARAMS


class FileModule(Module):
    """Walks trees like ``find -xdev`` and reads matching candidates once, like ``grep``."""

    name = "file"
    summary = "Find files by name, path, size, age, mode, content or digest"
    params = PARAMS
    columns = COLUMNS

    def run(self, params: dict[str, Any], ctx: RunContext) -> dict[str, int]:
        raise NotImplementedError("the walker lands in the next commit")
