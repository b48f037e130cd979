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

CHUNK = 1 << 20
#: A "line" longer than this (binary files) is searched in pieces rather than buffered whole.
MAX_LINE = 8 << 20
GZIP_MAGIC = b"\x1f\x8b"


class TooBig(Exception):
    """Decompressed data outgrew ``max_file_size`` (a gzip bomb, or just a big archive)."""


def compile_content(pattern: str) -> re.Pattern[bytes]:
    """Content regexes run on raw bytes: no decoding cost, and binaries are searchable."""
    return re.compile(pattern.encode("utf-8", "surrogatepass"), re.MULTILINE)


def _line_hit(
    first: re.Pattern[bytes], every: list[re.Pattern[bytes]], buf: bytes, end: int
) -> bool:
    """Is there a line in ``buf[:end]`` where every regex of ``every`` matches?

    ``first`` finds candidates fast over the whole buffer; each candidate line is then checked
    on its own, so no match may span two lines.
    """
    pos = 0
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
        self._pending = list(regexes)
        self._macroal = macroal
        self._match_any = match_any
        self._carry = b""
        self.done = False
        self.found = False

    def feed(self, chunk: bytes) -> None:
        buf = self._carry + chunk if self._carry else chunk
        cut = buf.rfind(b"\n")
        if cut < 0 and len(buf) < MAX_LINE:
            self._carry = buf
            return
        end = len(buf) if cut < 0 else cut
        self._carry = buf[end + 1 :]
        self._search(buf, end)

    def finish(self) -> None:
        """End of file: the last line may lack its newline (an empty remainder is no line)."""
        if self._carry and not self.done:
            self._search(self._carry, len(self._carry))
        self._carry = b""
        self.done = True

    def _search(self, buf: bytes, end: int) -> None:
        if self._macroal:
            self.found = self.done = _line_hit(self._regexes[0], self._regexes, buf, end)
            return
        for rx in list(self._pending):
            if _line_hit(rx, [rx], buf, end):
                self._pending.remove(rx)
                if self._match_any:
                    break
        if len(self._pending) < len(self._regexes) and (self._match_any or not self._pending):
            self.found = self.done = True


@dataclass
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

    def inspect(self, fd: int, algos: list[str] | None = None) -> Inspection:
        """Read ``fd`` to the end (or until the content answer is known and no digest needs the
        rest). ``algos`` overrides the digests to compute. Raises OSError, zlib.error, TooBig."""
        hashers = [hashlib.new(a) for a in (self.algos if algos is None else algos)]
        scanner = LineScanner(self.regexes, self.macroal, self.match_any) if self.regexes else None
        for chunk in self._chunks(fd):
            for h in hashers:
                h.update(chunk)
            if scanner is not None and not scanner.done:
                scanner.feed(chunk)
                if scanner.done and not hashers:
                    break
        if scanner is not None:
            scanner.finish()
        return Inspection(
            content=scanner is not None and scanner.found,
            digests={h.name: h.hexdigest() for h in hashers},
        )

    def sha256(self, fd: int) -> str:
        """The SHA-256 of what ``inspect`` would read (decompressed when asked), for
        ``return_sha256`` on files no digest filter made us hash already."""
        h = hashlib.sha256()
        for chunk in self._chunks(fd):
            h.update(chunk)
        return h.hexdigest()

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
