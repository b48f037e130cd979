"""Map a path seen from inside the investigated root to the real path on this machine.

Symlinks met while resolving a requested path are followed as if ``root`` were ``/``: an absolute
target restarts at the root and ``..`` stops there, so a planted link can never lead the walk
out of the root (a container's rootfs, a mounted disk image). Every file-system module resolves
the paths it is asked for here (the file module, ``modules.fs.walk`` for sshkey and yara, pkg).
"""

from __future__ import annotations

import errno
import os
import stat

_MAX_LINKS = 40  # as the kernel's MAXSYMLINKS


def shown_path(path: str) -> str:
    """Normal form of a requested path, as it is reported: ``/srv//a/`` -> ``/srv/a``."""
    return "/" + os.path.normpath(path).lstrip("/")


def resolve_in_root(root: str, path: str) -> str:
    """The real path of ``path`` (absolute, as seen from inside ``root``, itself absolute or
    relative to the working folder; "" is "/"); OSError if a component is missing."""
    prefix = "" if root in ("/", "") else os.path.abspath(root).rstrip("/")
    pending = [c for c in reversed(path.split("/")) if c not in ("", ".")]
    inside: list[str] = []
    links = 0
    while pending:
        part = pending.pop()
        if part == "..":
            if inside:
                inside.pop()
            continue
        real = prefix + "/" + "/".join([*inside, part])
        if not stat.S_ISLNK(os.lstat(real).st_mode):
            inside.append(part)
            continue
        links += 1
        if links > _MAX_LINKS:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), real)
        target = os.readlink(real)
        if target.startswith("/"):
            inside.clear()
        pending.extend(c for c in reversed(target.split("/")) if c not in ("", "."))
    return prefix + "/" + "/".join(inside)
