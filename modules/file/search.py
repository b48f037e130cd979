"""The file module's engine: walk the requested trees and apply the filters to each entry.

The walk is iterative (no recursion limit), reads each directory through a descriptor opened
with O_NOFOLLOW, never follows a symlink, and remembers every directory by (st_dev, st_ino), so
bind-mount loops end. Per entry, the cheap filters run first on the directory entry and its
lstat; only a regular file that survives them is opened, once, for content and digests.
"""

from __future__ import annotations

import os
import stat
import time
import zlib
from collections.abc import Callable
from contextlib import closing
from typing import Any, TypeVar

from modules.context import LimitReached, RunContext
from modules.fs.batch import ENTRIES, ERROR, FOUND, LARGE, BatchSearch, Stat
from modules.fs.dirs import FILE_FLAGS, Dir, directories, open_top
from modules.fs.filters import MetaCheck, meta_checks
from modules.fs.mounts import FALLBACK_PRUNED, mount_table, never_enter
from modules.fs.reader import Inspection, Reader, TooBig, compile_content
from modules.fs.rootpath import Root, shown_path
from modules.kinds import HASH_HEX_LENGTHS
from modules.regex import text_search
from modules.soft_errors import SoftErrors

_TICK = 1024  # entries between progress reports and cancellation checks

T = TypeVar("T")


class _Cancelled(Exception):
    """The investigator cancelled: unwind the walk and return the stats so far."""


class _PathEntry:
    """A requested path that is not a directory, dressed as the DirEntry ``_consider`` expects."""

    def __init__(self, name: str, st: os.stat_result) -> None:
        self.name = name
        self._st = st

    def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
        return self._st

    def is_file(self, *, follow_symlinks: bool = True) -> bool:
        return stat.S_ISREG(self._st.st_mode)


class FileSearch:
    """One run of the file module over validated params."""

    def __init__(self, params: dict[str, Any], ctx: RunContext) -> None:
        self.ctx = ctx
        self.paths: list[str] = params["paths"]
        self.root = Root(ctx.root)
        self.match_any: bool = params["match_any"]
        self.meta = meta_checks(params, time.time())
        inverted = set(params["mismatch"])
        #: With match-all, a file must pass the name filter's first regex: the listing loop tries
        #: it before anything else, as most entries of a name search fail it.
        self.gate: Callable[[str], bool] | None = None
        if params["name"] and not self.match_any and "name" not in inverted:
            self.gate = text_search(params["name"][0])
        self.hashes = {a: {h.lower() for h in params[a]} for a in HASH_HEX_LENGTHS if params[a]}
        self.deep = [(a, a in inverted) for a in (["content"] if params["content"] else [])]
        self.deep += [(a, a in inverted) for a in self.hashes]
        self.filtered = bool(self.meta or self.deep)
        self.reader = Reader(
            regexes=[compile_content(p) for p in params["content"]],
            algos=list(self.hashes),
            macroal=params["macroal"],
            match_any=self.match_any,
            decompress=params["decompress"],
            max_size=params["max_file_size"],
        )
        #: The usual content search (one regex, and at most name or path filters that must all
        #: hold) reads the small files of a directory in batches and searches each at once.
        self.batch: BatchSearch | None = None
        regexes = self.reader.regexes
        by_name = all(not c.needs_stat for c in self.meta) and not (self.meta and self.match_any)
        alone = by_name and not (self.hashes or params["decompress"] or "content" in inverted)
        if alone and len(regexes) == 1 and regexes[0].joinable:
            self.batch = BatchSearch(regexes[0], params["max_file_size"])
        self._found = [check.name for check in self.meta] + ["content"]
        self.return_sha256: bool = params["return_sha256"]
        self.max_depth: int | None = params["max_depth"]
        self.match_limit: int = params["match_limit"]
        self.max_file_size: int | None = params["max_file_size"]
        self.xdev: bool = params["xdev"]
        self.mounts = mount_table()
        self.visited: set[tuple[int, int]] = set()
        self.stats = dict.fromkeys(
            ("files_scanned", "dirs_scanned", "bytes_read", "matches", "errors", "skipped"), 0
        )
        self._error = SoftErrors(ctx, self.stats, params["max_errors"])
        self._ticks = 0

    def run(self) -> dict[str, int]:
        try:
            for path in self.paths:
                self._start(path)
        except _Cancelled:
            pass
        except LimitReached as err:  # ours, or the agent's cap raised by emit
            err.stats = self._snapshot()
            raise
        return self._snapshot()

    def _snapshot(self) -> dict[str, int]:
        self.stats["bytes_read"] = self.reader.bytes_read
        if self.batch is not None:
            self.stats["bytes_read"] += self.batch.bytes_read
        return dict(self.stats)

    def _start(self, path: str) -> None:
        shown = shown_path(path)
        try:
            at = self.root.locate(shown)
        except OSError as err:
            self._error(shown, err)
            return
        try:
            st = os.stat(at.name, dir_fd=at.dir_fd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                self.stats["files_scanned"] += 1
                entry = _PathEntry(os.path.basename(shown), st)
                self._consider(entry, shown, at.name, at.dir_fd)
                return
            top = open_top(at, shown)
        except OSError as err:
            self._error(shown, err)
            return
        finally:
            os.close(at.dir_fd)
        try:
            self._walk(top, st.st_dev)
        finally:
            top._close()

    def _walk(self, top: Dir, dev: int) -> None:
        stats = self.stats
        walk = directories(
            top,
            dev=dev if self.xdev else None,
            visited=self.visited,
            on_error=self._error,
            on_skip=self._skip,
        )
        with closing(walk):  # a limit or a cancel stops us: its descriptors close at once
            for d in walk:
                stats["dirs_scanned"] += 1
                try:
                    self._list(d)
                except OSError as err:
                    self._error(d.shown, err)

    def _list(self, d: Dir) -> None:
        """Apply the filters to the entries of one directory; note the subdirectories to enter.

        The hot loop of a search: it runs once per entry of the tree, so it does as little as it
        can per entry (locals, no stat, the name gate before anything else).
        """
        fd = d.fd
        descend = self.max_depth is None or d.depth < self.max_depth
        shown_base = d.shown.rstrip("/") + "/"
        consider = self._consider
        gate = self.gate
        subdirs = []
        files = 0
        batch: list[os.DirEntry[str]] | None = None if self.batch is None else []
        checks = self.meta if batch is not None else []
        ticks = self._ticks
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    ticks += 1
                    if ticks >= _TICK:
                        self.stats["files_scanned"] += files
                        files = ticks = 0
                        self._tick()
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            if descend:
                                subdirs.append(entry.name)
                            continue
                        files += 1
                        if gate is not None and not gate(entry.name):
                            continue
                        if batch is None:
                            consider(entry, shown_base + entry.name, entry.name, fd)
                        elif checks and not self._named(checks, entry.name, shown_base):
                            continue
                        elif entry.is_file(follow_symlinks=False):
                            batch.append(entry)
                            if len(batch) >= ENTRIES:
                                self._search_batch(fd, shown_base, batch)
                        else:
                            self.stats["skipped"] += 1
                    except OSError as err:
                        self._error(shown_base + entry.name, err)
            if batch:
                self._search_batch(fd, shown_base, batch)
        finally:
            self.stats["files_scanned"] += files
            self._ticks = ticks
        real_base = d.real.rstrip("/") + "/"
        for name in subdirs:
            if self._pruned(real_base + name, shown_base + name):
                self.stats["skipped"] += 1
            else:
                d.subdirs.append(name)

    @staticmethod
    def _named(checks: list[MetaCheck], name: str, shown_base: str) -> bool:
        """Do the name and path filters all hold (those of a batched search)?"""
        shown = shown_base + name
        return all(check.test(name, shown, None) is not check.inverted for check in checks)

    def _search_batch(self, fd: int, shown_base: str, batch: list[os.DirEntry[str]]) -> None:
        """Search the files listed in ``batch`` (regular files of ``fd`` that passed the name
        and path filters), then empty it."""
        assert self.batch is not None
        try:
            for index, code, value in self.batch.outcomes(fd, batch):
                entry = batch[index]
                shown = shown_base + entry.name
                if code == FOUND:
                    assert isinstance(value, Stat)
                    self._emit(entry, shown, value, self._found.copy(), None, entry.name, fd)
                elif code == LARGE:  # left to the general reader
                    self._consider(entry, shown, entry.name, fd)
                elif code == ERROR:
                    assert isinstance(value, int)
                    self._error(shown, OSError(value, os.strerror(value)))
                else:  # not a regular file (any more), or over max_file_size
                    self.stats["skipped"] += 1
        finally:
            batch.clear()

    def _skip(self, _shown: str) -> None:
        self.stats["skipped"] += 1

    def _pruned(self, real: str, shown: str) -> bool:
        """Mount points met below a requested path: other filesystems under xdev, and pseudo or
        network filesystems always. Decided from the mount table, before opening them."""
        fstype = self.mounts.get(real)
        if fstype is None:
            return not self.mounts and shown in FALLBACK_PRUNED
        return self.xdev or never_enter(fstype)

    def _consider(
        self, entry: os.DirEntry[str] | _PathEntry, shown: str, target: str, dir_fd: int
    ) -> None:
        """Apply the filters to one non-directory entry and emit it if it matches."""
        matched: list[str] = []
        match_all = not self.match_any
        st = None
        for check in self.meta:
            if check.needs_stat and st is None:
                st = entry.stat(follow_symlinks=False)
            if check.test(entry.name, shown, st) is not check.inverted:
                matched.append(check.name)
            elif match_all:
                return
        inspection = None
        if self.deep:
            opened = self._open(entry, st, shown, target, dir_fd, self.reader.inspect)
            if opened is None:  # not a regular file, too big, or unreadable: unknown
                if match_all:
                    return
            else:
                inspection, now = opened
                st = st or now
                for name, inverted in self.deep:
                    if name == "content":
                        hit = inspection.content
                    else:
                        hit = inspection.digests[name] in self.hashes[name]
                    if hit is not inverted:
                        matched.append(name)
                    elif match_all:
                        return
        if self.match_any and self.filtered and not matched:
            return
        if st is None:
            st = entry.stat(follow_symlinks=False)
        self._emit(entry, shown, st, matched, inspection, target, dir_fd)

    def _open(
        self,
        entry: os.DirEntry[str] | _PathEntry,
        st: os.stat_result | Stat | None,
        shown: str,
        target: str,
        dir_fd: int,
        read: Callable[[int, int], T],
    ) -> tuple[T, os.stat_result] | None:
        """Run ``read`` on the file if it is a regular file within max_file_size, and return
        what it gave with the opened file's fstat; None (counted as skipped or as an error)
        otherwise. FIFOs, devices and sockets are never opened.

        ``st`` is the entry's lstat if a filter needed it; the file opened must still be that
        one. Without it, no lstat is spent: the directory entry's type says "regular file", and
        the opened file's own fstat is what the row reports, so it describes what was read.
        """
        if st is not None:
            if not stat.S_ISREG(st.st_mode) or (
                self.max_file_size is not None and st.st_size > self.max_file_size
            ):
                self.stats["skipped"] += 1
                return None
        elif not entry.is_file(follow_symlinks=False):
            self.stats["skipped"] += 1
            return None
        try:
            fd = os.open(target, FILE_FLAGS, dir_fd=dir_fd)
        except OSError as err:
            self._error(shown, err)
            return None
        try:
            now = os.fstat(fd)
            if not stat.S_ISREG(now.st_mode) or (
                st is not None and (now.st_ino, now.st_dev) != (st.st_ino, st.st_dev)
            ):
                self.stats["skipped"] += 1  # replaced since it was listed
                return None
            if self.max_file_size is not None and now.st_size > self.max_file_size:
                self.stats["skipped"] += 1
                return None
            return read(fd, now.st_size), now
        except TooBig:
            self.stats["skipped"] += 1
            return None
        except (OSError, zlib.error) as err:
            self._error(shown, err)
            return None
        finally:
            os.close(fd)

    def _emit(
        self,
        entry: os.DirEntry[str] | _PathEntry,
        shown: str,
        st: os.stat_result | Stat,
        matched: list[str],
        inspection: Inspection | None,
        target: str,
        dir_fd: int,
    ) -> None:
        sha256 = inspection.digests.get("sha256") if inspection is not None else None
        if sha256 is None and self.return_sha256 and stat.S_ISREG(st.st_mode):
            opened = self._open(entry, st, shown, target, dir_fd, self.reader.sha256)
            sha256 = None if opened is None else opened[0]
        self.ctx.emit(
            {
                "path": shown,
                "size": st.st_size,
                "mode": stat.filemode(st.st_mode),
                "mtime": int(st.st_mtime),
                "sha256": sha256,
                "matched": matched,
            }
        )
        self.stats["matches"] += 1
        if self.stats["matches"] >= self.match_limit:
            raise LimitReached(f"file: match_limit of {self.match_limit} reached", self._snapshot())

    def _tick(self) -> None:
        self.ctx.progress(self._snapshot())
        if self.ctx.cancelled():
            raise _Cancelled
