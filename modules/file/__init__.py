"""The ``file`` module: find files by name, path, size, age, mode, content or digest."""

from __future__ import annotations

from typing import Any

from modules.base import Module, Needs, RunContext
from modules.file.declaration import COLUMNS, PARAMS
from modules.file.search import FileSearch


class FileModule(Module):
    """Walks trees like ``find -xdev`` and reads the surviving candidates once, like ``grep``."""

    name = "file"
    needs = Needs(read=("/proc",))  # its own mountinfo: the walk prunes by mount type
    summary = "Find files by name, path, size, age, mode, content or digest"
    params = PARAMS
    columns = COLUMNS
    example = {"paths": ["/etc"], "name": ["^passwd$"], "return_sha256": True}

    def run(self, params: dict[str, Any], ctx: RunContext) -> dict[str, int]:
        return FileSearch(params, ctx).run()
