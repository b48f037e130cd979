"""Every regex an action carries is compiled here, by RE2: matching time is linear in the subject.

Python's ``re`` backtracks: ``(a+)+$`` against a line of a's runs for ages, and an investigator's
typo, or a hostile signer, would spend an endpoint's CPU on it. RE2 (``google-re2``, the engine
of MIG's Go agent) runs every pattern it accepts in time linear in the subject, and refuses what
it cannot run so (backreferences, lookaround) with a reason; ``check`` gives that reason to the
parameter validation shared by the console and the agent.

Patterns are compiled as UTF-8 and matched on bytes: text (a file name, a command line) is
encoded with ``surrogateescape``, so a name that is not UTF-8 is matched on its real bytes.
Matching goes straight to the RE2 object under the ``re2`` wrapper (``re2._re2``): the wrapper's
``search`` costs about twice as much per call, and a walk calls it once per entry.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

import re2
from re2 import _re2

_UNANCHORED = _re2.RE2.Anchor.UNANCHORED
_NO_MATCH = (-1, -1)
#: Memory RE2 may use for one compiled pattern; a pattern needing more is refused.
_MAX_MEM = 8 << 20


def _compile(pattern: str, *, flags: str = "", lines: bool = False) -> _re2.RE2:
    """RE2 of ``pattern`` with inline ``flags`` (``i``, ``m``, ``s``); ValueError if refused.
    ``lines``: no match spans a newline (RE2's ``never_nl``), so a whole buffer is searched at
    once with the meaning of a search line by line."""
    options = re2.Options()
    options.log_errors = False  # refusals are reported to the investigator, not on stderr
    options.never_capture = True  # modules ask whether and where, never for groups
    options.max_mem = _MAX_MEM
    options.never_nl = lines
    try:
        source = pattern.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise ValueError("invalid regex: not valid UTF-8") from None
    if flags:
        source = b"(?" + flags.encode() + b")" + source
    compiled = _re2.RE2(source, options)
    if not compiled.ok():
        reason = compiled.error().decode("utf-8", "replace")
        raise ValueError(f"invalid regex: {reason}")
    return compiled


def check(pattern: str) -> None:
    """ValueError with RE2's reason if ``pattern`` is not a regex RE2 runs (a backreference,
    lookaround, a repetition over 1000, a program too large)."""
    _compile(pattern)


#: A pattern that is plain text, optionally anchored: ``^passwd$``, ``\\.conf$``, ``libkeyutils``.
#: RE2 accepts every one as it is (an escaped ASCII character other than a letter or digit is
#: that character; no surrogate, which would not encode to UTF-8), so none needs compiling.
_LITERAL = re.compile(r"(\^?)((?:[^\\.^$|?*+()\[\]{}\ud800-\udfff]|\\[\x00-/:-@\[-`{-\x7f])*)(\$?)")
_UNESCAPE = re.compile(r"\\(.)", re.DOTALL)


def text_search(pattern: str, *, ignore_case: bool = False) -> Callable[[str], bool]:
    """A predicate: does ``pattern`` occur in a text? Plain text, the usual name or path
    pattern, is answered with a string method (a walk asks once per entry, and a call into
    RE2 costs several times more); it means what RE2 would (``$`` is the end of the text).
    ValueError if RE2 refuses the pattern. Plain text is not compiled at all: every operation
    child builds its predicates afresh, and an RE2 compile there costs a third of a millisecond."""
    literal = None if ignore_case else _LITERAL.fullmatch(pattern)
    if literal is not None:
        text = _UNESCAPE.sub(r"\1", literal[2])
        start, end = bool(literal[1]), bool(literal[3])
        if start and end:
            return text.__eq__
        if start:
            return lambda subject: subject.startswith(text)
        if end:
            return lambda subject: subject.endswith(text)
        return lambda subject: text in subject
    match = _compile(pattern, flags="i" if ignore_case else "").Match

    def found(text: str) -> bool:
        data = text.encode("utf-8", "surrogateescape")
        return match(_UNANCHORED, data, 0, len(data))[0] != _NO_MATCH

    return found


Buffer = bytes | bytearray | memoryview
#: What ties a match to the text rather than to a line: ``\\A``, ``\\z``, a flag group turning
#: a flag off (``(?-m)``: ``^`` and ``$`` at the text's ends), and ``\\C``, any byte, a newline
#: too (``never_nl`` does not hold it back). Found in the pattern's text, erring on the safe side.
_TEXT_BOUND = re.compile(r"\\[ACz]|\(\?[A-Za-z]*-")


class BytesRegex:
    """A pattern searched in buffers: file content (line by line) or process memory."""

    __slots__ = ("_match", "joinable", "pattern")

    def __init__(self, pattern: str, *, lines: bool = False, dotall: bool = False) -> None:
        self.pattern = pattern
        #: ``lines``: ``^`` and ``$`` match at each line's ends, no match spans a newline.
        self._match = _compile(
            pattern, flags="m" if lines else "s" if dotall else "", lines=lines
        ).Match
        #: ``lines`` and nothing bound to the text: searching texts joined by newlines finds a
        #: match exactly where searching each text would (``modules.fs.batch``).
        self.joinable = lines and _TEXT_BOUND.search(pattern) is None

    def whole_search(self) -> Callable[[Buffer, int, int], tuple[tuple[int, int], ...]]:
        """RE2's own search, for a hot loop: ``search(text, 0, len(text))[0][0]`` is where the
        first match in ``text`` begins, or -1 (give the text as a slice: RE2 takes what lies
        past an end as context for ``$`` and ``\\b``). No Python frame of this class."""
        return functools.partial(self._match, _UNANCHORED)

    def find(self, buf: Buffer, start: int = 0, end: int | None = None) -> int:
        """Where the first match in ``buf[start:end]`` begins, or -1; the part searched is the
        whole text (RE2 would look past ``start`` and ``end`` to decide ``^``, ``$``, ``\\b``)."""
        if end is None:
            end = len(buf)
        if start == 0 and end == len(buf):
            return self._match(_UNANCHORED, buf, 0, end)[0][0]
        with memoryview(buf)[start:end] as part:
            at = self._match(_UNANCHORED, part, 0, end - start)[0][0]
        return at if at < 0 else start + at
