"""The file module's parameters and result columns, declared once.

Filters are listed cheapest first: that is also the order in which they are evaluated.
"""

from __future__ import annotations

from dataclasses import replace

from modules.base import Column, Param
from modules.fs.params import MAX_DEPTH, META_FILTERS, PATHS, XDEV
from modules.kinds import HASH_HEX_LENGTHS
from modules.soft_errors import MAX_ERRORS

#: Filters that need the file's bytes; each regular file is read at most once for all of them.
CONTENT_FILTERS = (
    Param(
        "content",
        "regex",
        "Regex searched in each line of the file (matched on bytes, like grep)",
        repeatable=True,
    ),
    *(
        Param(algo, "hash", f"The file's {algo.upper()} is one of these (hex)", repeatable=True)
        for algo in HASH_HEX_LENGTHS
    ),
)

FILTER_NAMES = tuple(p.name for p in META_FILTERS + CONTENT_FILTERS)

PARAMS = (
    replace(PATHS, required=True),
    *META_FILTERS,
    *CONTENT_FILTERS,
    Param("match_any", "bool", "Report files matching any filter (default: all must match)"),
    Param("macroal", "bool", "All content regexes must match on one same line"),
    Param(
        "mismatch",
        "filter",
        "Invert these filters, e.g. content: files with no such line",
        repeatable=True,
        choices=FILTER_NAMES,
    ),
    MAX_DEPTH,
    Param("match_limit", "int", "Stop after this many matching files", default=1000, minimum=1),
    Param(
        "max_file_size", "int", "Skip content and digest filters on larger files (bytes)", minimum=0
    ),
    Param("decompress", "bool", "Read gzip files decompressed for content and digest filters"),
    Param("return_sha256", "bool", "Add the SHA-256 of each matching file"),
    XDEV,
    MAX_ERRORS,
)

COLUMNS = (
    Column("path", "Path of the file, as seen from the agent's root", "path"),
    Column("size", "Size in bytes", "int"),
    Column("mode", "Type and permissions, as ls -l shows them", "text"),
    Column("mtime", "Last modification, epoch seconds", "time"),
    Column("sha256", "SHA-256 of the content, when asked or filtered on", "text"),
    Column("matched", "Filters that matched (after mismatch inversion)", "list"),
)
