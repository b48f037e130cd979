"""The parameters of a walk below the root, declared once for every module that walks.

A module takes the ones it needs; where it needs another default or requiredness it derives its
own with ``dataclasses.replace`` rather than declaring the parameter again.
"""

from __future__ import annotations

from modules.base import Param

PATHS = Param(
    "paths",
    "path",
    "Directories to walk or files to check, absolute, as seen from the agent's root",
    repeatable=True,
)
MAX_DEPTH = Param(
    "max_depth", "int", "Deepest level entered below each path (0: its entries only)", minimum=0
)
XDEV = Param(
    "xdev",
    "bool",
    "Stay on each path's filesystem (pseudo and network filesystems are never entered)",
    default=True,
)
#: Filters answered from the directory entry and its lstat, without opening the file (see
#: ``modules.fs.filters``), cheapest first: also the order in which they are evaluated.
META_FILTERS = (
    *Param.each(
        "regex",
        name="Regex searched in the file's base name",
        path_re="Regex searched in the file's full path",
    ),
    *Param.each(
        "size",
        size="Size bound: <10M, >1k or =0 (k, M, G, T are powers of 1024); several make a window",
    ),
    *Param.each(
        "age", mtime="Modified within (<2d) or before (>30d) a period; units s, m, h, d, w"
    ),
    *Param.each("mode", mode="Regex on the mode string, e.g. ^-rws (setuid file) or ^l (symlink)"),
)
