"""The walk cannot be raced out of the root (issue 11, point 4).

A racer process owns a directory inside the root and flips one of its subdirectories between a
real directory and a symlink to the host's ``/`` while the modules walk through it, a thousand
times. Whatever the timing, nothing outside the root may ever be reported: each open below the
root is relative to a descriptor and never follows a symlink.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modules.base import CollectingContext
from modules.fs import beneath
from modules.fs.walk import Root, walk
from modules.registry import get_module

WALKS = 1000
#: Walks go on past WALKS until one got through the racer's window, at most this many.
MAX_WALKS = 50 * WALKS


def walks(got_through: Callable[[], bool]) -> Iterator[int]:
    """At least WALKS walks, and more until ``got_through()`` (proof the race was on)."""
    for i in range(MAX_WALKS):
        if i >= WALKS and got_through():
            return
        yield i


#: Flip ``argv[1]`` between the directory ``argv[1].d`` and a symlink to ``argv[2]``, forever;
#: ``argv[1].flips`` appears once the first flip is done.
RACER = """
import os, sys
path, target = sys.argv[1], sys.argv[2]
os.symlink(target, path + ".l")
flips = 0
while True:
    os.rename(path, path + ".d")
    os.rename(path + ".l", path)
    os.rename(path, path + ".l")
    os.rename(path + ".d", path)
    flips += 1
    if flips == 1:
        open(path + ".flips", "w").close()
"""


@pytest.fixture
def racer(tmp_path: Path) -> Iterator[Any]:
    """Start the racer on ``tmp_path/root/<where>`` (a directory made by the test)."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(flipped: Path, target: str) -> None:
        proc = subprocess.Popen([sys.executable, "-c", RACER, str(flipped), target])
        procs.append(proc)
        marker = flipped.with_name(flipped.name + ".flips")
        while not marker.exists():  # the racer is running before the walks start
            assert proc.poll() is None, "the racer died"
            os.sched_yield()

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def _tree(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "root"
    inside = root / "a" / "b" / "etc"
    inside.mkdir(parents=True)
    (inside / "inside.txt").write_text("only this file is below the root\n")
    return root, root / "a" / "b"


@pytest.mark.parametrize("openat2", [True, False], ids=["openat2", "components"])
def test_file_module_never_reports_outside_the_root(
    tmp_path: Path, racer: Any, openat2: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if openat2 and not beneath.has_openat2():
        pytest.skip("this kernel has no openat2")
    monkeypatch.setattr(beneath, "_have_openat2", openat2)  # the test knob: walk by components
    module = get_module("file")
    assert module is not None
    root, flipped = _tree(tmp_path)
    racer(flipped, "/")
    params = module.validate({"paths": ["/a/b/etc"], "max_depth": 0, "max_errors": 0})
    seen: set[str] = set()
    for _ in walks(lambda: bool(seen)):
        ctx = CollectingContext(root=str(root))
        module.run(params, ctx)
        seen.update(row["path"] for row in ctx.rows)
    assert seen <= {"/a/b/etc/inside.txt"}, f"escaped the root: {sorted(seen)[:5]}"
    assert seen, "the racer never let a walk through: the test proved nothing"


def test_shared_walk_never_yields_outside_the_root(tmp_path: Path, racer: Any) -> None:
    root, flipped = _tree(tmp_path)
    racer(flipped, "/")
    seen: set[str] = set()
    read: set[bytes] = set()
    below = Root(str(root))
    for _ in walks(lambda: bool(seen)):
        for found in walk(below, ["/a/b/etc"], max_depth=0, on_error=lambda *_: None):
            seen.add(found.shown)
            try:
                fd = found.open()
            except OSError:
                continue
            try:
                read.add(os.read(fd, 100))
            finally:
                os.close(fd)
    assert seen <= {"/a/b/etc/inside.txt"}, f"escaped the root: {sorted(seen)[:5]}"
    assert read <= {b"only this file is below the root\n"}, "read a file outside the root"
    assert seen, "the racer never let a walk through: the test proved nothing"


@pytest.mark.skipif(
    not os.path.isfile("/var/lib/dpkg/status"), reason="the host has no dpkg database to leak"
)
def test_pkg_never_reads_the_hosts_database(tmp_path: Path, racer: Any) -> None:
    module = get_module("pkg")
    assert module is not None
    root = tmp_path / "root"
    status = root / "var" / "lib" / "dpkg" / "status"
    status.parent.mkdir(parents=True)
    status.write_text(
        "Package: inside-pkg\nStatus: install ok installed\nVersion: 1.0\nArchitecture: all\n"
    )
    racer(root / "var", "/var")
    params = module.validate({})
    names: set[str] = set()
    for _ in walks(lambda: bool(names)):
        ctx = CollectingContext(root=str(root))
        module.run(params, ctx)
        names.update(row["name"] for row in ctx.rows if row["source"] == "dpkg")
    assert names <= {"inside-pkg"}, f"read the host's dpkg database: {sorted(names)[:5]}"
    assert names, "the racer never let a read through: the test proved nothing"
