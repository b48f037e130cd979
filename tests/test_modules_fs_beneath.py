"""Opens below a directory descriptor (``modules.fs.beneath``) and paths found inside the root
(``modules.fs.rootpath``): never through a symlink, never out of the directory, openat2 or not."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from modules.fs import beneath
from modules.fs.rootpath import Root, read_regular

Opener = Callable[[int, str, int], int]

OPENERS: list[object] = [
    pytest.param(
        beneath.open_beneath,
        id="openat2",
        marks=pytest.mark.skipif(not beneath.has_openat2(), reason="this kernel has no openat2"),
    ),
    pytest.param(beneath.open_by_components, id="components"),
]


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[int]:
    """A descriptor of ``tmp_path/top`` holding a/b/file, a link to / and a link to a/."""
    top = tmp_path / "top"
    (top / "a" / "b").mkdir(parents=True)
    (top / "a" / "b" / "file").write_text("below\n")
    (top / "out").symlink_to("/")
    (top / "in").symlink_to("a")
    (top / "a" / "b" / "link").symlink_to("file")
    fd = os.open(top, os.O_PATH | os.O_DIRECTORY)
    yield fd
    os.close(fd)


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 100)
    finally:
        os.close(fd)


@pytest.mark.parametrize("opener", OPENERS)
def test_a_plain_path_opens(tree: int, opener: Opener) -> None:
    assert _read(opener(tree, "a/b/file", os.O_RDONLY)) == b"below\n"
    assert _read(opener(tree, "./a//b/./file", os.O_RDONLY)) == b"below\n"
    fd = opener(tree, "", os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert sorted(os.listdir(fd)) == ["a", "in", "out"]
    finally:
        os.close(fd)


@pytest.mark.parametrize("opener", OPENERS)
@pytest.mark.parametrize("path", ["out/etc/hostname", "in/b/file", "a/b/link", "out"])
def test_a_symlink_anywhere_is_refused(tree: int, opener: Opener, path: str) -> None:
    for flags in (os.O_RDONLY, os.O_PATH, os.O_RDONLY | os.O_DIRECTORY):
        with pytest.raises(OSError) as caught:
            os.close(opener(tree, path, flags))
        assert caught.value.errno in (errno.ELOOP, errno.ENOTDIR), (path, flags)


@pytest.mark.parametrize("opener", OPENERS)
@pytest.mark.parametrize("path", ["../top/a/b/file", "a/../../top/a/b/file", "/etc/hostname"])
def test_a_way_out_is_refused(tree: int, opener: Opener, path: str) -> None:
    with pytest.raises(OSError) as caught:
        os.close(opener(tree, path, os.O_RDONLY))
    assert caught.value.errno == errno.EXDEV


def test_symlinks_in_requested_paths_stay_inside_the_root(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "hostname").write_text("inside\n")
    (tmp_path / "abs").symlink_to("/etc")  # absolute: restarts at the root
    (tmp_path / "up").symlink_to("../../../../etc")  # .. stops at the root
    (tmp_path / "loop").symlink_to("loop")
    root = Root(str(tmp_path))
    for path in ("/etc/hostname", "/abs/hostname", "/up/hostname", "/etc/../abs/hostname"):
        assert _read(root.open(path, os.O_RDONLY)) == b"inside\n", path
        at = root.locate(path)
        os.close(at.dir_fd)
        assert (at.name, at.real) == ("hostname", f"{tmp_path}/etc/hostname")
    with pytest.raises(OSError) as caught:
        root.locate("/loop/x")
    assert caught.value.errno == errno.ELOOP
    at = root.locate("/abs")  # a link to a directory: the directory itself
    os.close(at.dir_fd)
    assert (at.name, at.real) == ("etc", f"{tmp_path}/etc")
    at = root.locate("/")
    os.close(at.dir_fd)
    assert (at.name, at.real) == (".", str(tmp_path))


def test_only_regular_files_are_read(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_bytes(b"x" * 10)
    root = Root(str(tmp_path))
    assert root.read("/file", 4) == b"xxxx"
    with pytest.raises(OSError) as caught:  # no writer: a blocking open would never return
        root.read("/fifo", 4)
    assert caught.value.errno == errno.EINVAL
    with pytest.raises(IsADirectoryError):
        root.read("/dir", 4)
    fd = os.open(tmp_path / "file", os.O_RDONLY)
    try:
        assert read_regular(fd, 100, "/file") == b"x" * 10
    finally:
        os.close(fd)
