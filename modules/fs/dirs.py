"""Walk a directory tree through descriptors, one path component at a time.

Every directory is opened relative to its parent's descriptor, by its single name, with
O_DIRECTORY|O_NOFOLLOW: no path is ever handed to the kernel whole, so depth is bounded by
``max_depth`` only, never by PATH_MAX (a file hidden 5 KB deep is found), and no component can be
swapped for a symlink between the listing and the opening. Reported paths are still built as
strings. A directory's descriptor stays open while subdirectories it listed wait their turn, so
the walk holds at most one descriptor per ancestor that still has unvisited subdirectories (a
plain deep chain holds two); should the descriptors run out, the subtree concerned is a soft error.

The walk is iterative (no recursion limit) and remembers every directory by (st_dev, st_ino), so
bind-mount loops end. The file module and ``modules.fs.walk`` both walk with it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator

from modules.fs.rootpath import Located

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
#: Opening a regular file: never through a symlink, and never blocking should it be swapped for
#: a FIFO or a device between the listing and the open.
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class Dir:
    """A directory being listed; ``fd`` is open until the walk moves on to the next one."""

    __slots__ = ("_waiting", "depth", "fd", "real", "shown", "subdirs")

    def __init__(self, fd: int, real: str, shown: str, depth: int) -> None:
        self.fd = fd
        self.real = real
        """Its path on this machine (a string only: the walk never opens it by path)."""
        self.shown = shown
        """Its path as seen from inside the investigated root."""
        self.depth = depth
        """0 for the requested directory."""
        self.subdirs: list[str] = []
        """Names of subdirectories (entries of ``fd``) to walk into next; the caller appends."""
        self._waiting = 0

    def _release(self) -> None:
        self._waiting -= 1
        if self._waiting <= 0:
            self._close()

    def _close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def join(base: str, name: str) -> str:
    """``base`` + ``/`` + ``name``, without doubling the slash of ``/``."""
    return base + name if base.endswith("/") else base + "/" + name


def open_top(at: Located, shown: str) -> Dir:
    """The directory a walk starts from, opened by its name relative to its located parent."""
    return Dir(os.open(at.name, DIR_FLAGS, dir_fd=at.dir_fd), at.real, shown, 0)


def directories(
    top: Dir,
    *,
    dev: int | None,
    visited: set[tuple[int, int]],
    on_error: Callable[[str, OSError], None],
    on_skip: Callable[[str], None] = lambda _shown: None,
) -> Generator[Dir, None, None]:
    """Each directory of the tree at ``top`` (see ``open_top``), parents first; ``top`` is
    closed as soon as its subdirectories are opened (close it too should this never be started:
    closing twice is harmless).

    The caller lists ``d.fd`` (``os.scandir(d.fd)``), opens entries with ``dir_fd=d.fd`` and
    appends to ``d.subdirs`` the names to walk into; both before asking for the next directory.
    A directory already in ``visited`` is passed over; one on another device than ``dev`` (when
    ``dev`` is given: xdev) goes to ``on_skip``; open and fstat errors go to ``on_error``.
    """
    pending: list[tuple[Dir, str, str, str, int]] = []
    current: Dir | None = top
    try:
        while current is not None or pending:
            if current is None:
                parent, name, real, shown, depth = pending.pop()
                try:
                    fd = os.open(name, DIR_FLAGS, dir_fd=parent.fd)
                except OSError as err:
                    on_error(shown, err)
                    continue
                finally:
                    parent._release()
                current = Dir(fd, real, shown, depth)
            try:
                st = os.fstat(current.fd)
            except OSError as err:  # pragma: no cover - fstat of an open descriptor
                on_error(current.shown, err)
                current._close()
                current = None
                continue
            key = (st.st_dev, st.st_ino)
            seen = key in visited
            visited.add(key)
            if seen or (dev is not None and st.st_dev != dev):
                if not seen:
                    on_skip(current.shown)
                current._close()
                current = None
                continue
            yield current
            d, current = current, None
            if not d.subdirs:
                d._close()
                continue
            d._waiting = len(d.subdirs)
            for sub in d.subdirs:
                pending.append((d, sub, join(d.real, sub), join(d.shown, sub), d.depth + 1))
            d.subdirs = []
    finally:  # the caller stopped early (match_limit, cancel, an error): close what is held
        if current is not None:
            current._close()
        for parent, *_ in pending:
            parent._close()
