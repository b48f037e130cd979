"""Read a file once, in chunks, feeding every requested digest and the content regexes.

Content regexes are line-based, like grep and MIG: a regex matches when it matches within one
line. RE2 runs each regex over a whole chunk at once, with ``^``/``$`` at line ends and no match
allowed to span a newline (``modules.regex``), which is the line-by-line answer without cutting
lines; only ``macroal`` (every regex on one same line) cuts the line of a hit and checks the
others on it.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from modules.regex import BytesRegex

#: What the reader holds: file bytes (the regexes also take memoryview slices of it).
Buffer = bytes | bytearray

CHUNK = 1 << 20
#: A "line" longer than this (binary files) is searched in pieces rather than buffered whole.
MAX_LINE = 8 << 20
GZIP_MAGIC = b"\x1f\x8b"


class TooBig(Exception):
    """Decompressed data outgrew ``max_file_size`` (a gzip bomb, or just a big archive)."""


def compile_content(pattern: str) -> BytesRegex:
    """Content regexes run on raw bytes, line by line: no decoding cost, binaries searchable."""
    return BytesRegex(pattern, lines=True)


def _same_line_hit(regexes: list[BytesRegex], buf: Buffer, start: int, end: int) -> bool:
    """Is there a line in ``buf[start:end]`` where every regex matches? The first regex finds
    the candidate lines over the whole part; the others are tried on each candidate line."""
    first, others = regexes[0], regexes[1:]
    pos = start
    while pos <= end:
        at = first.find(buf, pos, end)
        if at < 0:
            return False
        line = buf.rfind(b"\n", 0, at) + 1  # at least start: a newline precedes it
        stop = buf.find(b"\n", at, end)
        if stop < 0:
            stop = end
        if all(rx.find(buf, line, stop) >= 0 for rx in others):
            return True
        pos = stop + 1
    return False


class LineScanner:
    """Decides the ``content`` filter from a stream of chunks.

    Without macroal, the filter holds when every regex (or, with match_any, some regex) matches
    some line; with macroal, when one line matches every regex. ``done`` turns true as soon as
    the answer is known, so the caller can stop reading early.
    """

    def __init__(self, regexes: list[BytesRegex], macroal: bool, match_any: bool) -> None:
        self._regexes = regexes
        self._pending = regexes  # only ever replaced, never changed in place
        self._macroal = macroal
        self._match_any = match_any
        self._carry = b""
        self.done = False
        self.found = False

    def reset(self) -> LineScanner:
        """Make ready for the next file (a run reuses one scanner: files are read one by one)."""
        self._pending = self._regexes
        self._carry = b""
        self.done = self.found = False
        return self

    def whole(self, buf: Buffer, size: int, start: int = 0) -> None:
        """Decide from the rest of the file, ``buf[start:size]``, in one go (most files: all
        of it, in one read)."""
        self.done = True
        if size > start:
            # The last line may lack its newline; the empty remainder after one is no line.
            self._search(buf, start, size - 1 if buf[size - 1] == 0x0A else size)

    def feed(self, chunk: Buffer, size: int | None = None, final: bool = False) -> None:
        """Search the next ``size`` bytes of the file (all of ``chunk`` by default); ``final``
        says they end it (then ``finish`` need not be called).

        The line begun in the previous chunk is completed and searched on its own, the rest
        of the chunk where it lies: no copy of a chunk (a megabyte per read of a large file,
        and the page faults of the heap growing and shrinking for it)."""
        if size is None:
            size = len(chunk)
        start = 0
        if self._carry:
            ends = chunk.find(b"\n", 0, size)
            if ends < 0:  # no line ends in this chunk: the carried line grows (rare)
                chunk = self._carry + chunk[:size]
                size = len(chunk)
                self._carry = b""
            else:
                line, self._carry = self._carry + chunk[:ends], b""
                self._search(line, 0, len(line))
                if self.done:
                    return
                start = ends + 1
        if final:
            self.whole(chunk, size, start)
            return
        cut = chunk.rfind(b"\n", start, size)
        if cut < 0 and size - start < MAX_LINE:
            self._carry = bytes(chunk[start:size])
            return
        end = size if cut < 0 else cut
        self._carry = bytes(chunk[end + 1 : size])
        self._search(chunk, start, end)

    def finish(self) -> None:
        """End of file: the last line may lack its newline (an empty remainder is no line)."""
        if self._carry and not self.done:
            carry, self._carry = self._carry, b""
            self._search(carry, 0, len(carry))
        self._carry = b""
        self.done = True

    def _search(self, buf: Buffer, start: int, end: int) -> None:
        if self._macroal:
            self.found = self.done = _same_line_hit(self._regexes, buf, start, end)
        elif self._match_any:
            if any(rx.find(buf, start, end) >= 0 for rx in self._pending):
                self.found = self.done = True
        elif len(self._pending) == 1:  # the usual case, without building a list
            if self._pending[0].find(buf, start, end) >= 0:
                self._pending = []
                self.found = self.done = True
        else:
            self._pending = [rx for rx in self._pending if rx.find(buf, start, end) < 0]
            if not self._pending:
                self.found = self.done = True


@dataclass(slots=True, frozen=True)
class Inspection:
    """What one read of a file established."""

    content: bool = False
    digests: dict[str, str] = field(default_factory=dict)


#: The answers of a read that computed no digest: shared, not made per file.
_FOUND, _MISSED = Inspection(True), Inspection(False)


@dataclass
class Reader:
    """The content filters of one run; ``inspect`` applies them to an open file descriptor."""

    regexes: list[BytesRegex]
    algos: list[str]
    macroal: bool = False
    match_any: bool = False
    decompress: bool = False
    max_size: int | None = None
    bytes_read: int = 0

    def __post_init__(self) -> None:
        # Built once per run: the scanner template and the digest constructors. The read buffer
        # comes with the first file read (``_buffer``).
        self._scanner = LineScanner(self.regexes, self.macroal, self.match_any)
        self._makers = [getattr(hashlib, a) for a in self.algos]
        #: The usual search, one content regex and nothing else to compute, gets its own short
        #: path per file (``inspect``): a few Python calls fewer on each of thousands of files.
        self._one = None
        if len(self.regexes) == 1 and not (self.algos or self.decompress):
            self._one = self.regexes[0].whole_search()

    def inspect(self, fd: int, size: int = 0) -> Inspection:
        """Read ``fd`` to the end (or until the content answer is known and no digest needs the
        rest). ``size`` is the file's size by fstat, to spare a read at the end. Raises OSError,
        zlib.error, TooBig."""
        if self._one is not None:
            buf, view = self._buffer
            n = os.readv(fd, (buf,))
            self.bytes_read += n
            if n < CHUNK and 0 < size <= n:  # the whole file in one read, as ``whole`` does
                end = n - 1 if buf[n - 1] == 0x0A else n
                return _FOUND if self._one(view[:end], 0, end)[0][0] >= 0 else _MISSED
            longer = self._scanner.reset()
            self._read_rest(fd, size, n, [], longer)
            longer.finish()
            return _FOUND if longer.found else _MISSED
        # Per-file code: no comprehension (each is a call) unless a digest was asked for.
        hashers = [make() for make in self._makers] if self._makers else []
        scanner = self._scanner.reset() if self.regexes else None
        self._read(fd, size, hashers, scanner)
        if not hashers:
            return _FOUND if scanner is not None and scanner.found else _MISSED
        return Inspection(
            scanner is not None and scanner.found, {h.name: h.hexdigest() for h in hashers}
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
