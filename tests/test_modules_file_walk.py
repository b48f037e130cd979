"""How the file module walks: depth, limits, the root, symlinks, special files, mounts, errors."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modules.base import CollectingContext, LimitReached
from modules.fs.mounts import never_enter, parse_mountinfo
from modules.registry import get_module

FILE = get_module("file")
assert FILE is not None
COLUMNS = [c.name for c in FILE.columns]
IS_ROOT = os.geteuid() == 0


def run(root: Path | str, **params: Any) -> CollectingContext:
    ctx = CollectingContext(root=str(root), columns=COLUMNS)
    ctx.last_progress = FILE.run(FILE.validate({"paths": ["/"], **params}), ctx)
    return ctx


def paths(ctx: CollectingContext) -> set[str]:
    return {row["path"] for row in ctx.rows}


def touch(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_paths_are_reported_as_seen_from_the_root(tmp_path: Path) -> None:
    touch(tmp_path / "srv/www/index.html")
    touch(tmp_path / "etc/hosts")
    assert paths(run(tmp_path, paths=["/srv"])) == {"/srv/www/index.html"}
    assert paths(run(tmp_path, paths=["/srv/../srv/www/"])) == {"/srv/www/index.html"}
    assert paths(run(tmp_path)) == {"/srv/www/index.html", "/etc/hosts"}


def test_a_path_may_name_a_file(tmp_path: Path) -> None:
    touch(tmp_path / "etc/passwd", "root:x:0:0\n")
    ctx = run(tmp_path, paths=["/etc/passwd"], content=["^root:"])
    assert [(r["path"], r["matched"]) for r in ctx.rows] == [("/etc/passwd", ["content"])]


def test_missing_path_is_a_soft_error(tmp_path: Path) -> None:
    touch(tmp_path / "etc/hosts")
    ctx = run(tmp_path, paths=["/nope", "/etc"])
    assert ctx.errors == ["/nope: No such file or directory"]
    assert paths(ctx) == {"/etc/hosts"} and ctx.last_progress["errors"] == 1


def test_max_errors_caps_the_messages_not_the_count(tmp_path: Path) -> None:
    ctx = run(tmp_path, paths=[f"/missing{i}" for i in range(5)], max_errors=2)
    assert ctx.errors == [
        "/missing0: No such file or directory",
        "/missing1: No such file or directory",
        "more than 2 errors: further ones are only counted",
    ]
    assert ctx.last_progress["errors"] == 5


def test_max_depth(tmp_path: Path) -> None:
    touch(tmp_path / "a.txt")
    touch(tmp_path / "d1/b.txt")
    touch(tmp_path / "d1/d2/c.txt")
    assert paths(run(tmp_path, max_depth=0)) == {"/a.txt"}
    assert paths(run(tmp_path, max_depth=1)) == {"/a.txt", "/d1/b.txt"}
    assert paths(run(tmp_path)) == {"/a.txt", "/d1/b.txt", "/d1/d2/c.txt"}


def test_a_500_level_deep_tree(tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*["d"] * 500)
    touch(deep / "bottom.txt", "found me\n")
    expected = "/" + "d/" * 500 + "bottom.txt"
    assert paths(run(tmp_path, content=["^found"])) == {expected}
    assert paths(run(tmp_path, name=["bottom"], max_depth=499)) == set()
    assert paths(run(tmp_path, name=["bottom"], max_depth=500)) == {expected}


def make_deep(top: Path, levels: int, part: str = "d" * 250) -> tuple[str, int]:
    """``levels`` nested folders named ``part`` below ``top``, built through descriptors (the
    path soon outgrows PATH_MAX); returns the inside path of the folder at the bottom and an
    open descriptor of it."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(levels):
        os.mkdir(part, dir_fd=fd)
        child = os.open(part, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    return "/" + "/".join([part] * levels), fd


def test_a_file_deeper_than_path_max_is_found(tmp_path: Path) -> None:
    # An attacker's hiding place: 20 x 250 bytes of path, past PATH_MAX (4096), where a walker
    # opening directories by full path gets "File name too long".
    bottom, fd = make_deep(tmp_path, 20)
    try:
        plant = os.open("stash.txt", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd)
        os.write(plant, b"exfil NEEDLE-7\n")
        os.close(plant)
    finally:
        os.close(fd)
    expected = bottom + "/stash.txt"
    assert len(os.fsencode(str(tmp_path) + expected)) > os.pathconf("/", "PC_PATH_MAX")
    ctx = run(tmp_path, content=["NEEDLE-[0-9]"], return_sha256=True)
    assert [(r["path"], r["size"], r["matched"]) for r in ctx.rows] == [(expected, 15, ["content"])]
    assert ctx.rows[0]["sha256"] == hashlib.sha256(b"exfil NEEDLE-7\n").hexdigest()
    assert not ctx.errors and ctx.last_progress["dirs_scanned"] == 21
    assert paths(run(tmp_path, name=["^stash"], max_depth=20)) == {expected}
    assert paths(run(tmp_path, name=["^stash"], max_depth=19)) == set()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def deep_tmp(tmp_path: Path) -> Iterator[Path]:
    """A folder for trees too deep for ``shutil.rmtree`` (it recurses): rm -rf removes them."""
    yield tmp_path / "t"
    subprocess.run(["rm", "-rf", str(tmp_path / "t")], check=True)


def test_descriptors_stay_few_on_a_deep_chain_and_none_leak(deep_tmp: Path) -> None:
    deep_tmp.mkdir()
    _, fd = make_deep(deep_tmp, 1500, "d")
    try:
        for i in range(3000):  # at the bottom: progress is reported while 1500 levels down
            os.close(os.open(f"f{i}", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
    finally:
        os.close(fd)
    before = open_fds()
    held: list[int] = []

    class Watch(CollectingContext):
        def progress(self, stats: dict[str, int]) -> None:
            held.append(open_fds() - before)
            super().progress(stats)

    ctx = Watch(root=str(deep_tmp), columns=COLUMNS)
    FILE.run(FILE.validate({"paths": ["/"], "name": ["^f"], "match_limit": 10**6}), ctx)
    assert len(ctx.rows) == 3000 and all(r["path"].count("/") == 1501 for r in ctx.rows)
    assert len(held) >= 3 and max(held) <= 3  # the bottom folder, its parent, scandir's copy
    assert open_fds() == before
    with pytest.raises(LimitReached):  # stopped mid-walk: every descriptor is closed at once
        FILE.run(
            FILE.validate({"paths": ["/"], "match_limit": 10}), CollectingContext(str(deep_tmp))
        )
    assert open_fds() == before


def test_match_limit_stops_the_walk_at_once(tmp_path: Path) -> None:
    for d in range(5):
        for f in range(10):
            touch(tmp_path / f"d{d}/f{f}")
    ctx = CollectingContext(root=str(tmp_path), columns=COLUMNS)
    with pytest.raises(LimitReached) as err:
        FILE.run(FILE.validate({"paths": ["/"], "match_limit": 3}), ctx)
    assert str(err.value) == "file: match_limit of 3 reached"
    assert len(ctx.rows) == 3
    assert err.value.stats["matches"] == 3 and err.value.stats["files_scanned"] == 3


def test_the_agents_cap_carries_the_stats_too(tmp_path: Path) -> None:
    for f in range(10):
        touch(tmp_path / f"f{f}")
    ctx = CollectingContext(root=str(tmp_path), max_rows=2)
    with pytest.raises(LimitReached) as err:
        FILE.run(FILE.validate({"paths": ["/"]}), ctx)
    assert len(ctx.rows) == 2 and err.value.stats["matches"] == 2


def test_progress_and_cancellation(tmp_path: Path) -> None:
    for f in range(3000):
        touch(tmp_path / f"f{f:04}")
    ctx = run(tmp_path, name=["^nothing$"])
    assert ctx.progress_calls >= 2 and ctx.last_progress["files_scanned"] == 3000
    ctx = CollectingContext(root=str(tmp_path))
    ctx.cancel()
    stats = FILE.run(FILE.validate({"paths": ["/"], "match_limit": 5000}), ctx)
    assert stats["files_scanned"] < 3000 and len(ctx.rows) < 3000


def test_directory_symlinks_are_never_followed(tmp_path: Path) -> None:
    touch(tmp_path / "a/f.txt")
    (tmp_path / "a/up").symlink_to("..")
    (tmp_path / "a/self").symlink_to(".")
    (tmp_path / "a/abs").symlink_to("/")
    ctx = run(tmp_path)
    assert {r["path"]: r["mode"][0] for r in ctx.rows} == {
        "/a/f.txt": "-",
        "/a/up": "l",
        "/a/self": "l",
        "/a/abs": "l",
    }
    assert not ctx.errors


@pytest.fixture
def jail(tmp_path: Path) -> Path:
    """A root with links planted to escape it, next to a secret outside it."""
    touch(tmp_path / "outside/secret.txt", "TOPSECRET\n")
    root = tmp_path / "root"
    touch(root / "outside/secret.txt", "DECOY\n")  # where "/outside" leads when seen from the root
    touch(root / "usr/lib/libz.so", "zlib\n")
    (root / "srv").mkdir()
    (root / "srv/abs").symlink_to(tmp_path / "outside")
    (root / "srv/rel").symlink_to("../../../../../../../outside")
    (root / "srv/file").symlink_to(tmp_path / "outside/secret.txt")
    (root / "lib").symlink_to("usr/lib")
    return root


def test_symlinks_never_lead_out_of_the_root(jail: Path) -> None:
    ctx = run(jail, content=["SECRET|DECOY"])
    assert paths(ctx) == {"/outside/secret.txt"}  # the decoy, inside the root
    assert ctx.last_progress["skipped"] == 4  # the links are never opened
    ctx = run(jail, paths=["/srv/file"], content=["SECRET"])
    assert ctx.rows == [] and ctx.last_progress["bytes_read"] == 0
    ctx = run(jail, paths=["/srv/rel", "/srv/abs"], content=["SECRET|DECOY"])
    assert paths(ctx) == {"/srv/rel/secret.txt"}  # ".." stops at the root: the decoy again
    assert ctx.errors == ["/srv/abs: No such file or directory"]  # the host path, inside the root


def test_a_requested_symlink_is_resolved_inside_the_root(jail: Path) -> None:
    assert paths(run(jail, paths=["/lib"], content=["zlib"])) == {"/lib/libz.so"}


def test_a_fifo_is_never_opened(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    touch(tmp_path / "plain", "pipe dream\n")
    ctx = run(tmp_path, content=["pipe"])
    assert paths(ctx) == {"/plain"} and ctx.last_progress["skipped"] == 1
    ctx = run(tmp_path, name=["^pipe$"], mode=["^p"])
    assert [(r["path"], r["mode"]) for r in ctx.rows] == [("/pipe", "prw-r--r--")]


@pytest.mark.skipif(not IS_ROOT, reason="mknod needs root")
def test_device_files_are_never_opened(tmp_path: Path) -> None:
    os.mknod(tmp_path / "zero", stat.S_IFCHR | 0o644, os.makedev(1, 5))  # endless zeros if read
    touch(tmp_path / "plain", "x\n")
    ctx = run(tmp_path, content=["x"], sha256=["0" * 64], match_any=True)
    assert paths(ctx) == {"/plain"} and ctx.last_progress["skipped"] == 1


def test_the_real_dev_is_searched_without_reading_devices() -> None:
    ctx = run("/", paths=["/dev"], content=["x"], max_depth=0)
    assert ctx.last_progress["files_scanned"] > 0 and ctx.last_progress["bytes_read"] < 1 << 20


def test_a_2gib_sparse_file_is_not_read_past_max_file_size(tmp_path: Path) -> None:
    with open(tmp_path / "disk.img", "wb") as f:
        f.truncate(2 << 30)
    ctx = run(tmp_path, content=["x"], sha256=["0" * 64], max_file_size=1 << 20)
    assert (
        ctx.rows == []
        and ctx.last_progress["bytes_read"] == 0
        and ctx.last_progress["skipped"] == 1
    )
    ctx = run(tmp_path, name=["img$"], return_sha256=True, max_file_size=1 << 20)
    assert [(r["path"], r["size"], r["sha256"]) for r in ctx.rows] == [("/disk.img", 2 << 30, None)]
    assert ctx.last_progress["bytes_read"] == 0


def _as_nobody(root: Path, params: dict[str, Any]) -> tuple[list[str], list[str], dict[str, int]]:
    """Run the module in a forked child without root's power to read anything."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            ctx = CollectingContext(root=str(root))
            stats = FILE.run(FILE.validate(params), ctx)
            os.write(write_end, json.dumps([sorted(paths(ctx)), ctx.errors, stats]).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    found, errors, stats = json.loads(data)
    return found, errors, stats


@pytest.fixture
def world_readable_tmp() -> Iterator[Path]:
    """pytest's tmp_path sits in a 0700 folder of root's: nobody could not even reach it."""
    base = Path(tempfile.mkdtemp(prefix="spyglass-modules-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        for dirpath, _, _ in os.walk(base):
            os.chmod(dirpath, 0o755)
        shutil.rmtree(base)


def test_unreadable_directories_and_files_are_soft_errors(world_readable_tmp: Path) -> None:
    root = world_readable_tmp
    touch(root / "open/a.txt", "alpha\n").chmod(0o644)
    touch(root / "open/locked.txt", "alpha\n").chmod(0o000)
    touch(root / "locked/b.txt", "alpha\n")
    (root / "open").chmod(0o755)
    (root / "locked").chmod(0o000)
    params = {"paths": ["/"], "content": ["alpha"]}
    if IS_ROOT:
        found, errors, stats = _as_nobody(root, params)
    else:
        ctx = CollectingContext(root=str(root))
        stats = FILE.run(FILE.validate(params), ctx)
        found, errors = sorted(paths(ctx)), ctx.errors
    assert found == ["/open/a.txt"]
    assert sorted(errors) == ["/locked: Permission denied", "/open/locked.txt: Permission denied"]
    assert stats["errors"] == 2


def test_mountinfo_parsing() -> None:
    text = (
        "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
        "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
        "40 27 0:40 / /mnt/my\\040share rw shared:5 - nfs4 srv:/x rw\n"
        "41 27 0:41 / /home/u/remote rw - fuse.sshfs u@h: rw\n"
    )
    assert parse_mountinfo(text) == {
        "/proc": "proc",
        "/": "ext4",
        "/mnt/my share": "nfs4",
        "/home/u/remote": "fuse.sshfs",
    }
    assert [
        never_enter(t)
        for t in ("proc", "nfs4", "fuse.sshfs", "devtmpfs", "ext4", "tmpfs", "fuseblk")
    ] == [
        True,
        True,
        True,
        True,
        False,
        False,
        False,
    ]


@pytest.fixture
def mount() -> Iterator[Any]:
    """Mount for one test and always unmount; skip where mounting is not allowed."""
    done: list[Path] = []

    def do(*args: str) -> None:
        result = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
        if result.returncode:
            pytest.skip(f"cannot mount here: {result.stderr.strip()}")
        done.append(Path(args[-1]))

    yield do
    for target in reversed(done):
        subprocess.run(["umount", "-l", str(target)], check=True)


@pytest.mark.skipif(not IS_ROOT, reason="mounting needs root")
def test_xdev_stays_on_one_filesystem(tmp_path: Path, mount: Any) -> None:
    touch(tmp_path / "etc/hosts")
    (tmp_path / "mnt/other").mkdir(parents=True)
    mount("-t", "tmpfs", "spyglass-test", str(tmp_path / "mnt/other"))
    touch(tmp_path / "mnt/other/stash.bin")
    ctx = run(tmp_path)
    assert paths(ctx) == {"/etc/hosts"} and ctx.last_progress["skipped"] == 1
    assert paths(run(tmp_path, xdev=False)) == {"/etc/hosts", "/mnt/other/stash.bin"}
    assert paths(run(tmp_path, paths=["/mnt/other"])) == {"/mnt/other/stash.bin"}


@pytest.mark.skipif(not IS_ROOT, reason="mounting needs root")
def test_pseudo_filesystems_are_entered_only_when_named(tmp_path: Path, mount: Any) -> None:
    (tmp_path / "proc").mkdir()
    mount("-t", "proc", "proc", str(tmp_path / "proc"))
    touch(tmp_path / "etc/hosts")
    ctx = run(tmp_path, xdev=False)
    assert paths(ctx) == {"/etc/hosts"} and ctx.last_progress["dirs_scanned"] == 2
    assert paths(run(tmp_path, paths=["/proc"], name=["^uptime$"], max_depth=0)) == {"/proc/uptime"}


@pytest.mark.skipif(not IS_ROOT, reason="mounting needs root")
def test_a_bind_mount_loop_ends(tmp_path: Path, mount: Any) -> None:
    touch(tmp_path / "a/f.txt")
    (tmp_path / "a/loop").mkdir()
    mount("--bind", str(tmp_path), str(tmp_path / "a/loop"))
    ctx = run(tmp_path, xdev=False)
    assert [r["path"] for r in ctx.rows] == ["/a/f.txt"]
