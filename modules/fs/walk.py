"""Every file below the investigated root, for the modules that need no more (sshkey, yara).

The file module weaves its filters into its own listing loop; the modules here only need "every
non-directory entry under these paths, as seen from inside the root", so this is that and no
more, over the same parts: requested paths are found with ``Root.locate`` (a symlink never leads
out of the root), directories are walked through descriptors by ``fs.dirs`` (no PATH_MAX limit,
entries never followed, each directory entered once), and the pseudo filesystems' usual mount
points are never entered below a requested path. Every file is opened by its single name
relative to its directory's descriptor, never through a symlink.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import closing

from modules.fs.dirs import FILE_FLAGS, Dir, directories, join, open_top
from modules.fs.mounts import FALLBACK_PRUNED
from modules.fs.rootpath import Root, read_regular, shown_path

__all__ = ["FILE_FLAGS", "Found", "Root", "read_head", "walk"]


class Found:
    """A non-directory entry met by the walk.

    Its directory's descriptor is open only until the walk moves on: ``open`` the file (or read
    ``st``) before asking for the next one.
    """

    __slots__ = ("_dir_fd", "_entry", "_name", "_st", "real", "shown")

    def __init__(
        self,
        shown: str,
        real: str,
        name: str,
        dir_fd: int,
        *,
        entry: os.DirEntry[str] | None = None,
        st: os.stat_result | None = None,
    ) -> None:
        self.shown = shown
        """Path as seen from inside the root."""
        self.real = real
        """Path on this machine (for messages: the walk never opens it whole)."""
        self._name = name
        self._dir_fd = dir_fd
        self._entry = entry
        self._st = st

    @property
    def st(self) -> os.stat_result:
        """Its lstat, taken on first use."""
        if self._st is None:
            assert self._entry is not None
            self._st = self._entry.stat(follow_symlinks=False)
        return self._st

    def is_regular(self) -> bool:
        """A regular file (not a symlink), from the directory entry's type when it says."""
        if self._entry is not None:
            return self._entry.is_file(follow_symlinks=False)
        return stat.S_ISREG(self.st.st_mode)

    def open(self) -> int:
        """A read-only descriptor of the file, opened by its name relative to its directory,
        never through a symlink and never blocking (a FIFO swapped in meanwhile); check it with
        ``replaced``."""
        return os.open(self._name, FILE_FLAGS, dir_fd=self._dir_fd)

    def replaced(self, now: os.stat_result) -> bool:
        """Is the file opened (``now``: its fstat) not a regular file, or, if this entry's lstat
        was taken, another file than the one listed?"""
        if not stat.S_ISREG(now.st_mode):
            return True
        return self._st is not None and (now.st_dev, now.st_ino) != (
            self._st.st_dev,
            self._st.st_ino,
        )


def walk(
    root: Root,
    paths: list[str],
    *,
    max_depth: int | None = None,
    xdev: bool = True,
    on_error: Callable[[str, OSError], None],
) -> Iterator[Found]:
    """Every non-directory entry below ``paths`` (a requested path that is a file is yielded
    itself). ``max_depth`` 0 lists a directory's own entries only. Errors go to ``on_error``
    with the shown path and never stop the walk."""
    visited: set[tuple[int, int]] = set()
    for path in paths:
        shown = shown_path(path)
        try:
            at = root.locate(shown)
        except OSError as err:
            on_error(shown, err)
            continue
        try:
            st = os.stat(at.name, dir_fd=at.dir_fd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                yield Found(shown, at.real, at.name, at.dir_fd, st=st)
                continue
            top = open_top(at, shown)
        except OSError as err:
            on_error(shown, err)
            continue
        finally:
            os.close(at.dir_fd)
        try:
            yield from _below(top, st.st_dev if xdev else None, max_depth, visited, on_error)
        finally:
            top._close()


def _below(
    top: Dir,
    dev: int | None,
    max_depth: int | None,
    visited: set[tuple[int, int]],
    on_error: Callable[[str, OSError], None],
) -> Iterator[Found]:
    dirs = directories(top, dev=dev, visited=visited, on_error=on_error)
    with closing(dirs):
        for d in dirs:
            descend = max_depth is None or d.depth < max_depth
            try:
                with os.scandir(d.fd) as entries:
                    for entry in entries:
                        name = entry.name
                        try:
                            if entry.is_dir(follow_symlinks=False):
                                if descend and join(d.shown, name) not in FALLBACK_PRUNED:
                                    d.subdirs.append(name)
                                continue
                        except OSError as err:
                            on_error(join(d.shown, name), err)
                            continue
                        yield Found(
                            join(d.shown, name), join(d.real, name), name, d.fd, entry=entry
                        )
            except OSError as err:
                on_error(d.shown, err)


def read_head(found: Found, limit: int) -> bytes:
    """Up to ``limit`` bytes of a regular file found by ``walk``, refusing a file replaced since
    it was listed (OSError ESTALE) or anything not regular (OSError EINVAL)."""
    if not stat.S_ISREG(found.st.st_mode):
        raise OSError(errno.EINVAL, "not a regular file", found.shown)
    fd = found.open()
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (found.st.st_dev, found.st.st_ino):
            raise OSError(errno.ESTALE, "file replaced while scanning", found.shown)
        return read_regular(fd, limit, found.shown)
    finally:
        os.close(fd)
