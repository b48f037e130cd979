"""The ``file`` module: find files by name, path, size, age, mode, content or digest."""

from __future__ import annotations

import re
from typing import Any

from modules.base import Module, RunContext
from modules.file.declaration import COLUMNS, PARAMS
from modules.file.search import FileSearch
from modules.fs.reader import compile_content
from protocol.errors import ParamError


class FileModule(Module):
    """Walks trees like ``find -xdev`` and reads the surviving candidates once, like ``grep``."""

    name = "file"
    summary = "Find files by name, path, size, age, mode, content or digest"
    params = PARAMS
    columns = COLUMNS
    example = {"paths": ["/etc"], "name": ["^passwd$"], "return_sha256": True}

    def check(self, params: dict[str, Any]) -> None:
        # Content regexes run on bytes, where a few str-only escapes (\u, \N) do not exist.
        for i, pattern in enumerate(params["content"]):
            try:
                compile_content(pattern)
            except re.error as err:
                raise ParamError(f"content[{i}]: invalid regex: {err}") from None

    def run(self, params: dict[str, Any], ctx: RunContext) -> dict[str, int]:
        return FileSearch(params, ctx).run()
