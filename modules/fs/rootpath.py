"""Reach a path seen from inside the investigated root, through descriptors, never out of it.

The root is opened once (``Root``); every requested path is then found relative to that
descriptor, never handed to the kernel whole. Where no symlink is on the way (nearly always), one
``open_beneath`` reaches its directory. Symlinks met while resolving a requested path are
followed as if ``root`` were ``/`` (an absolute target restarts at the root, ``..`` stops there):
component by component, each step relative to the descriptor of the last and never followed by
the kernel, so a planted link, or a directory swapped for a link by a racer between two steps,
can never lead out of the root (a container's rootfs, a mounted disk image). Every file-system
module reaches the paths it is asked for here (file, ``modules.fs.walk`` for sshkey and yara, pkg).
"""

from __future__ import annotations

import errno
import os
import stat
from typing import NamedTuple

from modules.fs.beneath import open_beneath

_MAX_LINKS = 40  # as the kernel's MAXSYMLINKS
_PATH_DIR = os.O_PATH | os.O_DIRECTORY


def shown_path(path: str) -> str:
    """Normal form of a requested path, as it is reported: ``/srv//a/`` -> ``/srv/a``."""
    return "/" + os.path.normpath(path).lstrip("/")


def _parts(path: str) -> list[str]:
    return [c for c in path.split("/") if c not in ("", ".")]


class Located(NamedTuple):
    """Where a requested path is: an entry of a directory held open."""

    dir_fd: int
    """An ``O_PATH`` descriptor of its directory; the caller closes it."""
    name: str
    """Its name in that directory, never a symlink when found; "." when it is the directory."""
    real: str
    """Its path on this machine, for the mount table and messages (never opened)."""


class Root:
    """The investigated root. Each path is found from a fresh descriptor of it, so nothing
    stays open between lookups (a walk holds only the descriptors of its own directories)."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)

    def _real(self, names: list[str]) -> str:
        return (self.path.rstrip("/") + "/" + "/".join(names)).rstrip("/") or "/"

    def locate(self, path: str) -> Located:
        """Where ``path`` (absolute, as seen from inside the root) is; OSError if a component is
        missing, or was swapped for a symlink while it was being resolved."""
        parts = _parts(path)
        root_fd = os.open(self.path, _PATH_DIR | os.O_CLOEXEC)
        try:
            if not parts or ".." in parts:
                return self._follow(root_fd, parts)
            try:
                dir_fd = open_beneath(root_fd, "/".join(parts[:-1]), _PATH_DIR)
            except OSError as err:
                if err.errno != errno.ELOOP:
                    raise
                return self._follow(root_fd, parts)  # a symlink on the way
            try:
                st = os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False)
            except OSError:
                os.close(dir_fd)
                raise
            if stat.S_ISLNK(st.st_mode):
                os.close(dir_fd)
                return self._follow(root_fd, parts)
            return Located(dir_fd, parts[-1], self._real(parts))
        finally:
            os.close(root_fd)

    def open(self, path: str, flags: int) -> int:
        """A descriptor of ``path`` opened with ``flags`` (plus ``O_NOFOLLOW``)."""
        at = self.locate(path)
        try:
            return os.open(at.name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=at.dir_fd)
        finally:
            os.close(at.dir_fd)

    def read(self, path: str, limit: int) -> bytes:
        """Up to ``limit`` bytes of the regular file at ``path``; anything else (a FIFO, a device,
        a directory) is OSError EINVAL, refused without blocking and before any read."""
        fd = self.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            return read_regular(fd, limit, path)
        finally:
            os.close(fd)

    def _follow(self, root_fd: int, parts: list[str]) -> Located:
        """``locate`` with symlinks followed as if the root were ``/``."""
        pending = parts[::-1]
        inside: list[tuple[int, str]] = []  # (descriptor, name) of each directory entered
        links = 0
        try:
            while pending:
                part = pending.pop()
                if part == "..":
                    if inside:
                        os.close(inside.pop()[0])
                    continue
                here = inside[-1][0] if inside else root_fd
                st = os.stat(part, dir_fd=here, follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    links += 1
                    if links > _MAX_LINKS:
                        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), "/" + "/".join(parts))
                    target = os.readlink(part, dir_fd=here)
                    if target.startswith("/"):
                        while inside:
                            os.close(inside.pop()[0])
                    pending.extend(_parts(target)[::-1])
                    continue
                names = [name for _fd, name in inside]
                if not pending:
                    fd = inside.pop()[0] if inside else os.dup(root_fd)
                    return Located(fd, part, self._real([*names, part]))
                inside.append((open_beneath(here, part, _PATH_DIR), part))
            names = [name for _fd, name in inside]
            fd = inside.pop()[0] if inside else os.dup(root_fd)
            return Located(fd, ".", self._real(names))
        finally:
            for fd, _name in inside:
                os.close(fd)


def read_regular(fd: int, limit: int, where: str) -> bytes:
    """Up to ``limit`` bytes of ``fd`` if it is a regular file, else OSError (EISDIR, EINVAL)
    naming ``where``. Open it with ``O_NONBLOCK``: a FIFO must not stall the open either."""
    mode = os.fstat(fd).st_mode
    if stat.S_ISDIR(mode):
        raise OSError(errno.EISDIR, os.strerror(errno.EISDIR), where)
    if not stat.S_ISREG(mode):
        raise OSError(errno.EINVAL, "not a regular file", where)
    chunks = []
    left = limit
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
