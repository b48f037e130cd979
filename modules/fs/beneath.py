"""Open a path below a directory descriptor without ever following a symlink.

Linux 5.6+ does this in one call: ``openat2`` with ``RESOLVE_BENEATH`` (no component may lead
above the directory: no ``..`` past it, no absolute path) and ``RESOLVE_NO_SYMLINKS`` (no symlink
anywhere on the way, ``/proc`` magic links included). Python has no binding for it, so it is
called here through ``ctypes``. Where the kernel (or a seccomp filter) lacks it, the same
guarantee comes from walking the path one component at a time, each opened relative to the
previous one with ``O_NOFOLLOW``. Either way a component swapped for a symlink by a racer makes
the open fail (``ELOOP``), never lead elsewhere.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat

#: ``linux/openat2.h``; the syscall number is the same on every architecture (since 5.6).
SYS_OPENAT2 = 437
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
_RESOLVE = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS
#: How often to retry when openat2 reports a concurrent rename (EAGAIN) before walking instead.
_RETRIES = 8
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class _OpenHow(ctypes.Structure):
    _fields_ = (("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64))


_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
#: None until the first call tells whether the kernel has openat2.
_have_openat2: bool | None = None


def openat2(dir_fd: int, path: str, flags: int, resolve: int) -> int:
    """The raw system call; OSError as ``os.open`` raises it (ENOSYS on kernels without it)."""
    how = _OpenHow(flags | os.O_CLOEXEC, 0, resolve)
    fd = _syscall(
        ctypes.c_long(SYS_OPENAT2),
        ctypes.c_int(dir_fd),
        ctypes.c_char_p(os.fsencode(path)),
        ctypes.byref(how),
        ctypes.c_size_t(ctypes.sizeof(how)),
    )
    if fd < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), path)
    return int(fd)


def has_openat2() -> bool:
    """Does this kernel (under this process's seccomp filter) have a working openat2?"""
    global _have_openat2
    if _have_openat2 is None:
        try:
            os.close(openat2(-100, ".", os.O_PATH, _RESOLVE))  # AT_FDCWD: the working folder
            _have_openat2 = True
        except OSError:
            _have_openat2 = False
    return _have_openat2


def open_beneath(dir_fd: int, path: str, flags: int) -> int:
    """A descriptor of ``path`` (relative; "" or "." is ``dir_fd`` itself) below ``dir_fd``,
    opened with ``flags``; OSError (ELOOP for a symlink on the way, EXDEV for a way out)."""
    if has_openat2():
        for _ in range(_RETRIES):
            try:
                return openat2(dir_fd, path or ".", flags, _RESOLVE)
            except BlockingIOError:  # EAGAIN: a rename raced the lookup; it may try again
                continue
    return open_by_components(dir_fd, path, flags)


def open_by_components(dir_fd: int, path: str, flags: int) -> int:
    """``open_beneath`` without openat2: one ``O_NOFOLLOW`` open per component."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if path.startswith("/") or ".." in parts:
        raise OSError(errno.EXDEV, "path leads out of its directory", path)
    if not parts:
        return os.open(".", flags | os.O_CLOEXEC, dir_fd=dir_fd)
    current = dir_fd
    try:
        for part in parts[:-1]:
            fd = _open_one(part, _DIR, current, path)
            if current != dir_fd:
                os.close(current)
            current = fd
        return _open_one(parts[-1], flags, current, path)
    finally:
        if current != dir_fd:
            os.close(current)


def _open_one(name: str, flags: int, dir_fd: int, path: str) -> int:
    """Open one component, refusing a symlink with ELOOP as openat2 does (``O_NOFOLLOW`` alone
    gives ENOTDIR with ``O_DIRECTORY``, and opens the link itself with ``O_PATH``)."""
    try:
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except NotADirectoryError:
        if stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path) from None
        raise
    if flags & os.O_PATH and stat.S_ISLNK(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
    return fd
