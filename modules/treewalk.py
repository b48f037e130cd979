"""A small tree walker below the investigated root, shared by sshkey and yara.

The file module has its own engine (filters woven into the walk, one read per file); the modules
here only need "every regular file under these paths, as seen from inside the root", so this is
that and no more. Same safety rules: a symlink is never followed out of the root (requested paths
resolve as if the root were ``/``; entries found while walking are never followed at all), each
directory is entered once by (st_dev, st_ino), and pseudo filesystems are never entered.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass

_MAX_LINKS = 40  # the kernel's MAXSYMLINKS
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
#: Opening a regular file: never through a symlink, and never blocking should it be swapped for
#: a FIFO between the listing and the open.
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
#: Never entered below a requested path, whatever ``xdev`` says (they hold no evidence on disk,
#: and some files there block or never end).
_PSEUDO_TOPS = frozenset({"/proc", "/sys", "/dev"})


def shown_path(path: str) -> str:
    """Normal form of a requested path, as reported: ``/srv//a/`` -> ``/srv/a``."""
    return "/" + os.path.normpath(path).lstrip("/")


def real_path(root: str, path: str) -> str:
    """The real path of ``path`` (absolute, as seen from inside ``root``).

    Symlinks on the way are resolved as if ``root`` were ``/``: an absolute target restarts at
    the root and ``..`` stops there. OSError if a component is missing.
    """
    prefix = "" if root in ("/", "") else os.path.abspath(root).rstrip("/")
    todo = [c for c in reversed(path.split("/")) if c not in ("", ".")]
    done: list[str] = []
    hops = 0
    while todo:
        part = todo.pop()
        if part == "..":
            if done:
                done.pop()
            continue
        candidate = prefix + "/" + "/".join([*done, part])
        if not stat.S_ISLNK(os.lstat(candidate).st_mode):
            done.append(part)
            continue
        hops += 1
        if hops > _MAX_LINKS:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), candidate)
        target = os.readlink(candidate)
        if target.startswith("/"):
            done.clear()
        todo.extend(c for c in reversed(target.split("/")) if c not in ("", "."))
    return prefix + "/" + "/".join(done)


@dataclass(frozen=True)
class Found:
    """A non-directory entry met by the walk."""

    shown: str
    """Path as seen from inside the root."""
    real: str
    """Path on this machine."""
    st: os.stat_result
    """Its lstat."""


def walk(
    root: str,
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
            real = real_path(root, shown)
            st = os.lstat(real)
        except OSError as err:
            on_error(shown, err)
            continue
        if not stat.S_ISDIR(st.st_mode):
            yield Found(shown, real, st)
            continue
        stack = [(real, shown, 0)]
        while stack:
            real_dir, shown_dir, depth = stack.pop()
            try:
                fd = os.open(real_dir, _DIR_FLAGS)
            except OSError as err:
                on_error(shown_dir, err)
                continue
            try:
                dst = os.fstat(fd)
                if (dst.st_dev, dst.st_ino) in visited or (xdev and dst.st_dev != st.st_dev):
                    continue
                visited.add((dst.st_dev, dst.st_ino))
                listed = _list(fd, shown_dir, on_error)
            except OSError as err:
                on_error(shown_dir, err)
                continue
            finally:
                os.close(fd)
            base_real = real_dir.rstrip("/") + "/"
            base_shown = shown_dir.rstrip("/") + "/"
            for name, est in listed:
                child_shown = base_shown + name
                if stat.S_ISDIR(est.st_mode):
                    if (max_depth is None or depth < max_depth) and (
                        child_shown not in _PSEUDO_TOPS
                    ):
                        stack.append((base_real + name, child_shown, depth + 1))
                    continue
                yield Found(child_shown, base_real + name, est)


def _list(
    fd: int, shown_dir: str, on_error: Callable[[str, OSError], None]
) -> list[tuple[str, os.stat_result]]:
    """Names and lstats of a directory's entries, taken while its descriptor is open (the
    entries of ``scandir(fd)`` stat relative to it)."""
    out = []
    with os.scandir(fd) as it:
        for entry in it:
            try:
                out.append((entry.name, entry.stat(follow_symlinks=False)))
            except OSError as err:
                on_error(shown_dir.rstrip("/") + "/" + entry.name, err)
    return out


def read_head(found: Found, limit: int) -> bytes:
    """Up to ``limit`` bytes of a regular file found by ``walk``, refusing a file replaced since
    it was listed (OSError ESTALE) or anything not regular (OSError EINVAL)."""
    if not stat.S_ISREG(found.st.st_mode):
        raise OSError(errno.EINVAL, "not a regular file", found.shown)
    fd = os.open(found.real, FILE_FLAGS)
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (found.st.st_dev, found.st.st_ino):
            raise OSError(errno.ESTALE, "file replaced while scanning", found.shown)
        chunks = []
        left = limit
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
