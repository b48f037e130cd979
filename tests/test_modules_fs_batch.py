"""The batched content search: the C reader equals its Python twin on every kind of entry, a
batch search answers what each file's own line-by-line search answers, and the file module
finds the same rows with the C reader, with the Python one, and file by file."""

from __future__ import annotations

import array
import errno
import os
import shlex
import shutil
import socket
import sysconfig
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modules.base import CollectingContext
from modules.file.search import FileSearch
from modules.fs import batch
from modules.fs.batch import ERROR, LARGE, META, NOT_REGULAR, TOO_BIG, BatchSearch, read_files_py
from modules.fs.reader import compile_content
from modules.registry import get_module

try:
    from modules.fs._batchread import read_files as read_files_c
except ImportError:
    read_files_c = None

C_COMPILER = shlex.split(sysconfig.get_config_var("CC") or "cc")[0]
READERS = [
    pytest.param(read_files_py, id="python"),
    pytest.param(
        read_files_c,
        id="c",
        marks=pytest.mark.skipif(read_files_c is None, reason="the C extension is not built"),
    ),
]


def test_the_extension_is_built_where_a_compiler_is() -> None:
    if shutil.which(C_COMPILER) is None:
        pytest.skip(f"no C compiler ({C_COMPILER}): the Python twin reads, slower")
    if not Path(sysconfig.get_paths()["include"], "Python.h").exists():
        pytest.skip("no Python headers (python3-dev): the Python twin reads, slower")
    assert read_files_c is not None, "pip install -e . did not build modules.fs._batchread"
    assert batch.read_files is read_files_c


def odd_tree(top: Path) -> list[str]:
    """One of each kind of entry a directory holds; the names in listing order for the test."""
    (top / "nl").write_bytes(b"one\ntwo\n")
    os.utime(top / "nl", ns=(-1_500_000_000, -1_500_000_000))  # 1969: whole seconds toward 0
    (top / "no-nl").write_bytes(b"three")
    (top / "empty").write_bytes(b"")
    (top / "just-nl").write_bytes(b"\n")
    (top / "big").write_bytes(b"x" * 40)  # over max_size 30
    (top / "large").write_bytes(b"y" * 20)  # window 16 or more: the general reader's
    os.mkfifo(top / "fifo")
    (top / "dir").mkdir()
    (top / "link").symlink_to("nl")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(top / "sock"))
    sock.close()
    (top / "last").write_bytes(b"a\n\nb")
    return [
        *("nl", "no-nl", "fifo", "empty", "missing", "just-nl"),
        *("big", "link", "large", "dir", "sock", "last"),
    ]


def read_all(reader: Any, top: Path, names: list[str], room: int) -> list[Any]:
    """Every batch ``reader`` makes of ``names``, with the bytes and fstats it left."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    batches, start = [], 0
    try:
        while start < len(names):
            buf = bytearray(room)
            meta = array.array("q", bytes(8 * META * 4))
            nxt, end, starts, odd, nread = reader(fd, names, start, buf, 16, 30, meta)
            read = [k for k in range(nxt - start) if start + k not in {i for i, *_ in odd}]
            stats = [meta[META * k : META * k + 3].tolist() for k in read]
            batches.append((nxt, end, starts, odd, nread, bytes(buf[: end + 1]), stats))
            start = nxt
    finally:
        os.close(fd)
    return batches


@pytest.mark.parametrize("reader", READERS)
def test_each_kind_of_entry_is_read_or_reported(reader: Any, tmp_path: Path) -> None:
    names = odd_tree(tmp_path)
    got = read_all(reader, tmp_path, names, room=3 * 17)  # two windows and their newline
    codes = {names[i]: (code, value) for b in got for i, code, value in b[3]}
    assert codes == {
        "fifo": (NOT_REGULAR, 0),  # opened without blocking, never read
        "missing": (ERROR, errno.ENOENT),
        "big": (TOO_BIG, 0),
        "link": (ERROR, errno.ELOOP),  # never followed
        "large": (LARGE, 0),
        "dir": (NOT_REGULAR, 0),
        "sock": (ERROR, errno.ENXIO),  # a socket is not opened
    }
    text = b"".join(b[5] for b in got)
    assert text == b"one\ntwo\nthree\n\na\n\nb\n"  # each file's lines, a newline after each
    first = got[0]
    assert first[0] == 4 and first[2] == [0, 8, 14, 14]  # four entries' fstats fit in meta
    size = (tmp_path / "nl").stat()
    assert first[6][0] == [size.st_mode, 8, int(size.st_mtime)]
    assert int(size.st_mtime) == -1  # not floor's -2


@pytest.mark.parametrize("reader", READERS)
def test_a_buffer_without_room_for_one_window_is_refused(reader: Any, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    meta = array.array("q", bytes(8 * META))
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:  # else a caller looping until every entry is handled would loop forever
        with pytest.raises(ValueError, match="no room"):
            reader(fd, ["f"], 0, bytearray(16), 16, -1, meta)
        with pytest.raises(ValueError, match="no room"):
            reader(fd, ["f"], 0, bytearray(17), 16, -1, meta[:1])
        assert reader(fd, ["f"], 0, bytearray(17), 16, -1, meta)[:2] == (1, 1)
    finally:
        os.close(fd)


@pytest.mark.skipif(read_files_c is None, reason="the C extension is not built")
@pytest.mark.parametrize("room", [17, 33, 60, 1000])
def test_the_c_reader_equals_its_python_twin(tmp_path: Path, room: int) -> None:
    names = odd_tree(tmp_path)
    assert read_all(read_files_c, tmp_path, names, room) == read_all(
        read_files_py, tmp_path, names, room
    )


def line_search(data: bytes, pattern: str) -> bool:
    """The definition: each line (a trailing newline ends the last one) searched alone."""
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    rx = compile_content(pattern)
    return any(rx.find(line) >= 0 for line in lines)


PATTERNS = ["^$", "^a", "a$", r"\bab\b", "b*", "^", "$", "a+b", "(?i)AB", r"a\s", "[^a]b"]
FILES = st.lists(
    st.lists(st.sampled_from(["", "a", "b", "ab", " ab ", "A b", "\x00"]), max_size=4)
    .map("\n".join)
    .flatmap(lambda text: st.sampled_from([text, text + "\n"]))
    .map(str.encode),
    min_size=1,
    max_size=12,
)


@pytest.mark.parametrize("reader", READERS)
@settings(max_examples=150, deadline=None)
@given(files=FILES, pattern=st.sampled_from(PATTERNS), window=st.sampled_from([4, 8, 64]))
def test_a_batch_finds_what_each_file_alone_finds(
    tmp_path_factory: pytest.TempPathFactory,
    reader: Any,
    files: list[bytes],
    pattern: str,
    window: int,
) -> None:
    top = tmp_path_factory.mktemp("b")
    for i, data in enumerate(files):
        (top / f"f{i:02}").write_bytes(data)
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        entries = sorted(os.scandir(fd), key=lambda e: e.name)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(batch, "WINDOW", window)  # several batches, and files left over (LARGE)
            search = BatchSearch(compile_content(pattern), None, reader)
            outcomes = list(search.outcomes(fd, entries))
    finally:
        os.close(fd)
    found = {i for i, code, _ in outcomes if code == batch.FOUND}
    large = {i for i, code, _ in outcomes if code == LARGE}
    assert [i for i, *_ in outcomes] == sorted(found | large)  # in the order of the entries
    assert large == {i for i, data in enumerate(files) if len(data) >= window}
    expected = {i for i, data in enumerate(files) if line_search(data, pattern)}
    assert found == expected - large


def tree(top: Path) -> None:
    for d in range(3):
        (top / f"d{d}").mkdir()
        for i in range(300):  # more than one call's entries
            text = f"line {i}\nNEEDLE-{i:04}-x\n" if i % 7 == d else f"plain {i}"
            (top / f"d{d}" / f"f{i}.txt").write_text(text)
    (top / "d0" / "huge.log").write_bytes(b"z" * (batch.WINDOW + 5) + b"\nNEEDLE-0001-big\n")
    os.mkfifo(top / "d1" / "fifo")
    (top / "d2" / "link").symlink_to("/etc/passwd")


def search(top: Path, **params: Any) -> tuple[FileSearch, CollectingContext]:
    module = get_module("file")
    assert module is not None
    ctx = CollectingContext(root=str(top))
    return FileSearch(module.validate({"paths": ["/"], **params}), ctx), ctx


def rows(top: Path, batched: bool, **params: Any) -> tuple[list[dict[str, Any]], int]:
    """The rows of a search of ``top`` made by ``tree``, and how many entries it skipped."""
    run, ctx = search(top, **params)
    assert (run.batch is not None) == batched
    stats = run.run()
    assert stats["errors"] == 0 and stats["files_scanned"] == 903
    return sorted(ctx.rows, key=lambda row: row["path"]), stats["skipped"]


@pytest.mark.parametrize(
    ("filters", "count"),
    [
        ({}, 130),
        ({"name": [r"\.log$"]}, 1),
        ({"path_re": ["^/d[12]/"]}, 86),
        ({"name": [r"^f1\d*\.txt$"], "mismatch": ["name"]}, 83),  # f1, f10-f19, f100-f199 out
    ],
)
def test_the_file_module_finds_the_same_with_either_reader_or_file_by_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, filters: dict[str, Any], count: int
) -> None:
    tree(tmp_path)
    params = {"content": [r"NEEDLE-[0-9]{4}-[a-z]+$"], "match_limit": 10**6, **filters}
    batched, skipped = rows(tmp_path, True, **params)
    assert len(batched) == count
    by_file, skipped_by_file = rows(tmp_path, False, **params, size=["<1T"])  # file by file
    for row in by_file:
        row["matched"].remove("size")
    assert (batched, skipped) == (by_file, skipped_by_file)
    monkeypatch.setattr(batch, "read_files", read_files_py)
    assert rows(tmp_path, True, **params) == (batched, skipped)


@pytest.mark.parametrize(
    "params",
    [
        {"content": ["a", "b"]},
        {"content": ["a"], "name": ["x"], "match_any": True},
        {"content": ["a"], "mtime": ["<1d"]},
        {"content": ["a"], "mismatch": ["content"]},
        {"content": ["a"], "md5": ["0" * 32]},
        {"content": ["a"], "decompress": True},
    ],
)
def test_what_a_batch_cannot_answer_is_searched_file_by_file(
    tmp_path: Path, params: dict[str, Any]
) -> None:
    assert search(tmp_path, **params)[0].batch is None


@pytest.mark.parametrize(
    ("pattern", "a", "b", "expected"),
    [  # what a search of a and b joined would answer instead: nothing, nothing, nothing, a
        (r"\Afoo", b"x", b"foo", {"/b"}),
        (r"foo\z", b"foo", b"x", {"/a"}),
        ("(?-m)^foo", b"x", b"foo\n", {"/b"}),
        (r"a\Cb", b"a", b"b", set()),  # joined: "a\nb", where \C takes the newline
    ],
)
def test_a_pattern_bound_to_the_text_is_searched_file_by_file(
    tmp_path: Path, pattern: str, a: bytes, b: bytes, expected: set[str]
) -> None:
    (tmp_path / "a").write_bytes(a)
    (tmp_path / "b").write_bytes(b)
    module = get_module("file")
    assert module is not None
    ctx = CollectingContext(root=str(tmp_path))
    search = FileSearch(module.validate({"paths": ["/"], "content": [pattern]}), ctx)
    assert search.batch is None
    search.run()
    assert {row["path"] for row in ctx.rows} == expected
