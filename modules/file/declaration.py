"""The file module's parameters and result columns, declared once.

Filters are listed cheapest first: that is also the order in which they are evaluated.
"""

from __future__ import annotations

from modules.base import Column, Param
from modules.kinds import HASH_HEX_LENGTHS

#: Filters answered from the directory entry and its lstat, without opening the file.
META_FILTERS = (
    Param("name", "regex", "Regex searched in the file's base name", repeatable=True),
    Param("path_re", "regex", "Regex searched in the file's full path", repeatable=True),
    Param(
        "size",
        "size",
        "Size bound: <10M, >1k or =0 (k, M, G, T are powers of 1024); several make a window",
        repeatable=True,
    ),
    Param(
        "mtime",
        "age",
        "Modified within (<2d) or before (>30d) a period; units s, m, h, d, w",
        repeatable=True,
    ),
    Param(
        "mode",
        "mode",
        "Regex on the mode string, e.g. ^-rws (setuid file) or ^l (symlink)",
        repeatable=True,
    ),
)

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
    Param(
        "paths",
        "path",
        "Directories to walk or files to check, absolute, as seen from the agent's root",
        repeatable=True,
        required=True,
    ),
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
    Param(
        "max_depth", "int", "Deepest level entered below each path (0: its entries only)", minimum=0
    ),
    Param("match_limit", "int", "Stop after this many matching files", default=1000, minimum=1),
    Param(
        "max_file_size", "int", "Skip content and digest filters on larger files (bytes)", minimum=0
    ),
    Param("decompress", "bool", "Read gzip files decompressed for content and digest filters"),
    Param("return_sha256", "bool", "Add the SHA-256 of each matching file"),
    Param(
        "xdev",
        "bool",
        "Stay on each path's filesystem (pseudo and network filesystems are never entered)",
        default=True,
    ),
    Param(
        "max_errors",
        "int",
        "Report at most this many soft errors; further ones are only counted",
        default=100,
        minimum=0,
    ),
)

COLUMNS = (
    Column("path", "Path of the file, as seen from the agent's root", "path"),
    Column("size", "Size in bytes", "int"),
    Column("mode", "Type and permissions, as ls -l shows them", "text"),
    Column("mtime", "Last modification, epoch seconds", "time"),
    Column("sha256", "SHA-256 of the content, when asked or filtered on", "text"),
    Column("matched", "Filters that matched (after mismatch inversion)", "list"),
)
