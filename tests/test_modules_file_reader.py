"""The file module's reader: content regexes are line-based whatever the chunking, and digests
cover every byte read once."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modules.fs import reader
from modules.fs.reader import Reader, compile_content


def reference(data: bytes, patterns: list[str], macroal: bool, match_any: bool) -> bool:
    """The definition: split into lines (a trailing newline ends the last line), search each."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    rxs = [re.compile(p.encode()) for p in patterns]
    if macroal:
        return any(all(rx.search(line) for rx in rxs) for line in lines)
    hits = [any(rx.search(line) for line in lines) for rx in rxs]
    return any(hits) if match_any else all(hits)


def inspect(path: Path, patterns: list[str], digest: bool, **kw: bool) -> tuple[bool, str | None]:
    """The content answer and, if asked (a digest takes the reader off its short path for one
    regex), the SHA-256."""
    algos = ["sha256"] if digest else []
    r = Reader(regexes=[compile_content(p) for p in patterns], algos=algos, **kw)
    fd = os.open(path, os.O_RDONLY)
    try:
        got = r.inspect(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)
    if digest or not got.content:  # else it may stop reading at the answer
        assert r.bytes_read == path.stat().st_size
    return got.content, got.digests.get("sha256")


PATTERNS = ["NEEDLE-[0-9]+", "^key=", "x$", "^$", "a.b", r"\s", "ZZ", "[^a]b"]
LINES = st.lists(
    st.sampled_from(["", "key=1", "NEEDLE-42", "a b", "ab", "aZZ", "tax", "x", "NEEDLE-", "\r"]),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(
    lines=LINES,
    trailing=st.booleans(),
    chunk=st.sampled_from([1, 2, 3, 5, 8, 64, 1 << 20]),
    patterns=st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=3, unique=True),
    macroal=st.booleans(),
    match_any=st.booleans(),
    digest=st.booleans(),
)
def test_content_answer_does_not_depend_on_chunking(
    tmp_path_factory: pytest.TempPathFactory,
    lines: list[str],
    trailing: bool,
    chunk: int,
    patterns: list[str],
    macroal: bool,
    match_any: bool,
    digest: bool,
) -> None:
    data = "\n".join(lines).encode() + (b"\n" if trailing and lines else b"")
    path = tmp_path_factory.mktemp("r") / "f"
    path.write_bytes(data)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(reader, "CHUNK", chunk)
        got, sha256 = inspect(path, patterns, digest, macroal=macroal, match_any=match_any)
    assert got == reference(data, patterns, macroal, match_any)
    assert sha256 == (hashlib.sha256(data).hexdigest() if digest else None)


def test_a_file_that_grows_or_has_no_size_is_read_to_its_end(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"one\ntwo NEEDLE-1\n")
    r = Reader(regexes=[compile_content("NEEDLE")], algos=["md5"])
    fd = os.open(path, os.O_RDONLY)
    try:
        got = r.inspect(fd, 0)  # st_size 0, as procfs says: read until read returns nothing
    finally:
        os.close(fd)
    assert got.content and got.digests["md5"] == hashlib.md5(path.read_bytes()).hexdigest()
