"""Read a file once, in chunks, feeding every requested digest and the content regexes.

Content regexes are line-based, like grep and MIG: a regex matches when it matches within one
line. Each chunk is searched whole, in C, with ``re.MULTILINE``; only a hit is cut down to its
line and checked again, which drops the rare match that spans a newline (``\\s``, ``[^x]``).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

CHUNK = 1 << 20
#: A "line" longer than this (binary files) is searched in pieces rather than buffered whole.
MAX_LINE = 8 << 20
GZIP_MAGIC = b"\x1f\x8b"


class TooBig(Exception):
    """Decompressed data outgrew ``max_file_size`` (a gzip bomb, or just a big archive)."""


def compile_content(pattern: str) -> re.Pattern[bytes]:
    """Content regexes run on raw bytes: no decoding cost, and binaries are searchable."""
    return re.compile(pattern.encode("utf-8", "surrogatepass"), re.MULTILINE)


#: Bytes from most to least common in text and binaries; a byte not listed is rarer than all.
_COMMON = (
    b" \x00etaoinsrhldcumfpgwybvkxjqz\n0123456789\t\r.,-_:/=\"'()\xff;<>ETAOINSRHLDCUMFPGWYBVKXJQZ"
)


def rare_byte(rx: re.Pattern[bytes]) -> bytes | None:
    """A byte that every match of ``rx`` contains, chosen rare, or None if there is none.

    It comes from a run of plain characters in the pattern's top-level sequence (``NEEDLE-`` in
    ``NEEDLE-[0-9]+``). Like grep, a buffer is first searched for it with ``bytes.find`` (one
    ``memchr``, many GB/s; a multi-byte find is slower than the regex itself), and the regex
    runs only from the line where it first occurs: most buffers never need the regex at all.
    """
    try:  # the parser ``re.compile`` itself uses: private, hence guarded
        from re import _parser  # type: ignore[attr-defined]

        tree = _parser.parse(rx.pattern, rx.flags)
        literal = _parser.LITERAL  # type: ignore[attr-defined]
    except Exception:  # pragma: no cover - another Python's internals: go without the shortcut
        return None
    if tree.state.flags & re.IGNORECASE:
        return None
    # Every item of the top-level sequence is part of every match; a literal is one byte.
    found = {arg for op, arg in tree if op is literal}
    if not found:
        return None
    best = max(found, key=lambda b: (_COMMON.find(bytes((b,))) % (len(_COMMON) + 1), -b))
    return bytes((best,))


Buffer = bytes | bytearray


def _line_hit(
    first: re.Pattern[bytes],
    every: list[re.Pattern[bytes]],
    rares: list[bytes],
    buf: Buffer,
    end: int,
) -> bool:
    """Is there a line in ``buf[:end]`` where every regex of ``every`` matches?

    Each of ``rares`` (bytes the regexes require, see ``rare_byte``) must occur first. ``first``
    then finds candidates fast over the buffer, from the line where the first of them occurs;
    each candidate line is checked on its own, so no match may span two lines.
    """
    pos = 0
    for i, rare in enumerate(rares):
        at = buf.find(rare, 0, end)
        if at < 0:
            return False
        if i == 0:
            pos = buf.rfind(b"\n", 0, at) + 1
    while pos <= end:
        m = first.search(buf, pos, end)
        if m is None:
            return False
        start = buf.rfind(b"\n", 0, m.start()) + 1
        stop = buf.find(b"\n", m.start(), end)
        if stop < 0:
            stop = end
        line = buf[start:stop]
        if all(rx.search(line) for rx in every):
            return True
        pos = stop + 1
    return False


class LineScanner:
    """Decides the ``content`` filter from a stream of chunks.

    Without macroal, the filter holds when every regex (or, with match_any, some regex) matches
    some line; with macroal, when one line matches every regex. ``done`` turns true as soon as
    the answer is known, so the caller can stop reading early.
    """

    def __init__(self, regexes: list[re.Pattern[bytes]], macroal: bool, match_any: bool) -> None:
        self._regexes = regexes
        rares = {rx: [m] if (m := rare_byte(rx)) else [] for rx in regexes}
        #: ``_line_hit`` arguments for each regex on its own (the pending list is only ever
        #: replaced, never changed in place, so a new file starts from this same list).
        self._plans = [(rx, [rx], rares[rx]) for rx in regexes]
        self._all_rares = [m for rx in regexes for m in rares[rx]]
        self._pending = self._plans
        self._macroal = macroal
        self._match_any = match_any
        self._carry = b""
        self.done = False
        self.found = False

    def reset(self) -> LineScanner:
        """Make ready for the next file (a run reuses one scanner: files are read one by one)."""
        self._pending = self._plans
        self._carry = b""
        self.done = self.found = False
        return self

    def whole(self, buf: Buffer, size: int) -> None:
        """Decide from the whole file, ``buf[:size]``, in one go (most files: one read)."""
        self.done = True
        if size:
            # The last line may lack its newline; the empty remainder after one is no line.
            self._search(buf, size - 1 if buf[size - 1] == 0x0A else size)

    def feed(self, chunk: Buffer, size: int | None = None, final: bool = False) -> None:
        """Search the next ``size`` bytes of the file (all of ``chunk`` by default); ``final``
        says they end it (then ``finish`` need not be called)."""
        if size is None:
            size = len(chunk)
        if self._carry:
            chunk = self._carry + chunk[:size]
            size = len(chunk)
            self._carry = b""
        if final:
            self.whole(chunk, size)
            return
        cut = chunk.rfind(b"\n", 0, size)
        if cut < 0 and size < MAX_LINE:
            self._carry = bytes(chunk[:size])
            return
        end = size if cut < 0 else cut
        self._carry = bytes(chunk[end + 1 : size])
        self._search(chunk, end)

    def finish(self) -> None:
        """End of file: the last line may lack its newline (an empty remainder is no line)."""
        if self._carry and not self.done:
            carry, self._carry = self._carry, b""
            self._search(carry, len(carry))
        self._carry = b""
        self.done = True

    def _search(self, buf: Buffer, end: int) -> None:
        if self._macroal:
            hit = _line_hit(self._regexes[0], self._regexes, self._all_rares, buf, end)
            self.found = self.done = hit
        elif self._match_any:
            if any(_line_hit(*plan, buf, end) for plan in self._pending):
                self.found = self.done = True
        elif len(self._pending) == 1:  # the usual case, without building a list
            if _line_hit(*self._pending[0], buf, end):
                self._pending = []
                self.found = self.done = True
        else:
            self._pending = [plan for plan in self._pending if not _line_hit(*plan, buf, end)]
            if not self._pending:
                self.found = self.done = True


@dataclass(slots=True)
class Inspection:
    """What one read of a file established."""

    content: bool = False
    digests: dict[str, str] = field(default_factory=dict)


@dataclass
class Reader:
    """The content filters of one run; ``inspect`` applies them to an open file descriptor."""

    regexes: list[re.Pattern[bytes]]
    algos: list[str]
    macroal: bool = False
    match_any: bool = False
    decompress: bool = False
    max_size: int | None = None
    bytes_read: int = 0

    def __post_init__(self) -> None:
        # Built once per run: the scanner template (regexes and their literals) and the digest
        # constructors. The read buffer comes with the first file read (``_buffer``).
        self._scanner = LineScanner(self.regexes, self.macroal, self.match_any)
        self._makers = [getattr(hashlib, a) for a in self.algos]

    def inspect(self, fd: int, size: int = 0) -> Inspection:
        """Read ``fd`` to the end (or until the content answer is known and no digest needs the
        rest). ``size`` is the file's size by fstat, to spare a read at the end. Raises OSError,
        zlib.error, TooBig."""
        # Per-file code: no comprehension (each is a call) unless a digest was asked for.
        hashers = [make() for make in self._makers] if self._makers else []
        scanner = self._scanner.reset() if self.regexes else None
        self._read(fd, size, hashers, scanner)
        return Inspection(
            scanner is not None and scanner.found,
            {h.name: h.hexdigest() for h in hashers} if hashers else {},
        )

    def sha256(self, fd: int, size: int = 0) -> str:
        """The SHA-256 of what ``inspect`` would read (decompressed when asked), for
        ``return_sha256`` on files no digest filter made us hash already."""
        h = hashlib.sha256()
        self._read(fd, size, [h], None)
        return h.hexdigest()

    def _read(self, fd: int, size: int, hashers: list[Any], scanner: LineScanner | None) -> None:
        if self.decompress:
            for chunk in self._chunks(fd):
                for h in hashers:
                    h.update(chunk)
                if scanner is not None and not scanner.done:
                    scanner.feed(chunk)
                    if scanner.done and not hashers:
                        break
        else:
            buf, view = self._buffer
            n = os.readv(fd, (buf,))
            self.bytes_read += n
            if n < CHUNK and 0 < size <= n:  # the whole file in one read: most files
                if hashers:
                    with view[:n] as part:
                        for h in hashers:
                            h.update(part)
                if scanner is not None:
                    scanner.whole(buf, n)
                return
            self._read_rest(fd, size, n, hashers, scanner)
        if scanner is not None:
            scanner.finish()

    @cached_property
    def _buffer(self) -> tuple[bytearray, memoryview]:
        """One buffer that every file of the run is read into: no allocation per read, and none
        at all (1 MiB of fresh pages in a short-lived child) for a run that reads no content."""
        buf = bytearray(CHUNK)
        return buf, memoryview(buf)

    def _read_rest(
        self, fd: int, size: int, n: int, hashers: list[Any], scanner: LineScanner | None
    ) -> None:
        """The general case of ``_read``: the first ``n`` bytes are in the buffer already."""
        (buf, view), total = self._buffer, n
        while True:
            # A short read of a regular file is its end once fstat's size is reached; a file
            # with no size (procfs) or one still growing is read until read returns nothing.
            final = n == 0 or (n < CHUNK and 0 < size <= total)
            if n:
                with view[:n] as part:
                    for h in hashers:
                        h.update(part)
            if scanner is not None and not scanner.done:
                scanner.feed(buf, n, final)
                if scanner.done and not hashers:
                    return
            if final:
                return
            n = os.readv(fd, (buf,))
            total += n
            self.bytes_read += n

    def _raw(self, fd: int) -> Iterator[bytes]:
        while chunk := os.read(fd, CHUNK):
            self.bytes_read += len(chunk)
            yield chunk

    def _chunks(self, fd: int) -> Iterator[bytes]:
        raw = self._raw(fd)
        first = next(raw, b"")
        if self.decompress and first.startswith(GZIP_MAGIC):
            yield from self._gunzip(first, raw)
            return
        if first:
            yield first
        yield from raw

    def _gunzip(self, first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
        """Decompress (possibly concatenated) gzip members, never holding more than a chunk of
        output at once and never more than ``max_size`` in total."""
        d = zlib.decompressobj(wbits=31)
        fresh = True  # d has not been fed yet: the data must open a gzip member
        total = 0
        for data in itertools.chain([first], rest):
            while data or not fresh:
                if fresh and not data.startswith(GZIP_MAGIC):
                    return  # bytes after the last member are ignored, as gzip(1) does
                fresh = False
                out = d.decompress(data, CHUNK)
                total += len(out)
                if self.max_size is not None and total > self.max_size:
                    raise TooBig
                if out:
                    yield out
                if d.eof:
                    data, d, fresh = d.unused_data, zlib.decompressobj(wbits=31), True
                    continue
                data = d.unconsumed_tail
                if not data and len(out) < CHUNK:
                    break  # input used up and nothing pending: wait for the next chunk
        if not fresh:
            raise zlib.error("truncated gzip stream")
