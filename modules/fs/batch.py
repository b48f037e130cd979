"""The usual content search, one regex over many small files, done a directory's batch at a time.

Searching file by file costs a handful of Python calls per file (open, fstat, read, close, one
RE2 search), and on a tree of small files those calls, not the bytes, are most of the time.
Here the files of one directory are read back to back into one buffer (``read_files``: by the
C extension ``_batchread`` when it was built, else by its pure-Python twin below, which it must
equal), each file's last line ended by a newline, and RE2 searches the whole buffer at once:
one call per batch, one more per matching file.

That answers each file's own line-by-line search exactly because no match can cross a newline
(``never_nl``), ``^``, ``$`` and ``\\b`` see a newline at each file's edges as they would see
the text's own edges, and the search resumes past the file of each match. A pattern that ties
a match to the text itself (``\\A``, ``\\z``, ``(?-m)``, ``\\C``) is not ``joinable``: such a
search stays file by file.

Each file is opened by its single name relative to the directory's descriptor, with
``O_NOFOLLOW|O_NONBLOCK`` (never through a symlink, never blocking on a FIFO swapped in), and
only a regular file is read, at most ``window`` bytes of it. A file of ``window`` bytes or more
is left to the general reader (``LARGE``), as are odd entries to the caller.
"""

from __future__ import annotations

import array
import os
import stat
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

from modules.fs.dirs import FILE_FLAGS
from modules.regex import BytesRegex

#: What became of an entry that was not read into the batch (``read_files``' ``odd`` list).
ERROR, NOT_REGULAR, TOO_BIG, LARGE = 1, 2, 3, 4
#: A file whose search matched (``BatchSearch.outcomes``).
FOUND = 0
#: int64 per entry in ``meta``: its fstat's mode, size, mtime, inode and device.
META = 5
#: The most read of one file here (larger ones go to the general reader); the buffer holds two.
#: On the bench, 256 KiB took 3-7% less CPU than 64 KiB (more files left over) or 1 MiB.
WINDOW = 1 << 18
#: Entries per call: bounds what is held between a directory's listing and its reading.
ENTRIES = 256

#: ``(next, end, starts, odd, nread)``: see ``read_files_py``.
Batch = tuple[int, int, list[int], list[tuple[int, int, int]], int]


def read_files_py(
    dir_fd: int,
    entries: Sequence[str | os.DirEntry[str]],
    start: int,
    buf: bytearray,
    window: int,
    max_size: int,
    meta: array.array[int],
) -> Batch:
    """Read ``entries[start:]`` (names, or directory entries) of ``dir_fd`` into ``buf``, one
    after the other, while a window of ``window`` bytes and a newline fit in and ``meta`` has
    room. ``max_size`` < 0: no cap.

    Returns ``next``, the index of the first entry not handled; ``end``, where the last file
    read ends (its final newline, -1 if none had bytes); ``starts``, one per entry handled,
    where its bytes begin (an entry with none begins where the next does); ``odd``, the entries
    not read as ``(index, code, errno or 0)``; and ``nread``, the bytes read. The fstat of each
    file read is in ``meta[META * (index - start):]``."""
    slots = len(meta) // META
    if window <= 0 or start < 0 or len(buf) <= window or slots < 1:
        raise ValueError("no room for a window and its newline, or a stat")
    starts: list[int] = []
    odd: list[tuple[int, int, int]] = []
    view = memoryview(buf)
    off, end, nread, i = 0, -1, 0, start
    while i < len(entries) and i - start < slots and off + window + 1 <= len(buf):
        entry = entries[i]
        name = entry if isinstance(entry, str) else entry.name
        starts.append(off)
        i += 1
        code = value = got = 0
        try:
            fd = os.open(name, FILE_FLAGS, dir_fd=dir_fd)
        except OSError as err:
            odd.append((i - 1, ERROR, err.errno or 0))
            continue
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                code = NOT_REGULAR
            elif 0 <= max_size < st.st_size:
                code = TOO_BIG
            elif st.st_size >= window:
                code = LARGE
            else:
                got = _read_window(fd, view[off : off + window], st.st_size)
                if got >= window:
                    code = LARGE  # grew past its size: the general reader reads it again
        except OSError as err:
            code, value = ERROR, err.errno or 0
        finally:
            os.close(fd)
        nread += got
        if code:
            odd.append((i - 1, code, value))
            continue
        at = META * (i - 1 - start)
        meta[at : at + META] = array.array(
            "q", (st.st_mode, st.st_size, int(st.st_mtime), st.st_ino, st.st_dev)
        )
        if got:
            if buf[off + got - 1] != 0x0A:
                buf[off + got] = 0x0A
                got += 1
            end = off + got - 1
            off += got
    return i, end, starts, odd, nread


def _read_window(fd: int, window: memoryview, size: int) -> int:
    """Read into ``window`` until the end of file, fstat's ``size`` (no last read to learn
    what a regular file's size said) or a full window."""
    total = 0
    while total < len(window):
        got = os.readv(fd, (window[total:],))
        if got == 0:
            break
        total += got
        if 0 < size <= total:
            break
    return total


try:
    from modules.fs._batchread import read_files
except ImportError:  # not built (no C compiler where it was installed): the same, slower
    read_files = read_files_py


class Stat(NamedTuple):
    """What a row reports of a file read in a batch: its fstat when it was read."""

    st_mode: int
    st_size: int
    st_mtime: int
    st_ino: int
    st_dev: int


#: ``(index in entries, FOUND or an odd code, the Stat of a found file or an errno)``.
Outcome = tuple[int, int, "Stat | int"]


class BatchSearch:
    """One joinable content regex searched in the files of directories, a batch at a time."""

    def __init__(
        self, regex: BytesRegex, max_size: int | None, read: Callable[..., Batch] | None = None
    ) -> None:
        self._search = regex.whole_search()
        self._max_size = -1 if max_size is None else max_size
        self._read = read or read_files
        self._buf = bytearray(2 * WINDOW + 1)
        self._view = memoryview(self._buf)
        self._meta = array.array("q", bytes(8 * META * ENTRIES))
        self.bytes_read = 0

    def outcomes(self, dir_fd: int, entries: list[os.DirEntry[str]]) -> Iterator[Outcome]:
        """What the search found in ``entries`` (regular files of ``dir_fd`` by their
        directory entry), in their order: the files matched, and every entry not read."""
        i = 0
        while i < len(entries):
            first = i
            i, end, starts, odd, nread = self._read(
                dir_fd, entries, first, self._buf, WINDOW, self._max_size, self._meta
            )
            self.bytes_read += nread
            found: list[Outcome] = [
                (first + k, FOUND, self._stat(k)) for k in self._matches(starts, end)
            ]
            yield from sorted([*found, *odd], key=_index) if odd else found

    def _matches(self, starts: list[int], end: int) -> Iterator[int]:
        """The entries (by index in ``starts``) whose bytes hold a match."""
        if end < 0:
            return
        text, pos = self._view[:end], 0
        with text:
            while True:
                at = self._search(text, pos, end)[0][0]
                if at < 0:
                    return
                k = bisect_right(starts, at) - 1
                yield k
                if k + 1 >= len(starts) or starts[k + 1] > end:
                    return
                pos = starts[k + 1]

    def _stat(self, k: int) -> Stat:
        return Stat(*self._meta[META * k : META * k + META])


def _index(outcome: Outcome) -> int:
    return outcome[0]
