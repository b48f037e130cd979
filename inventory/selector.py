"""Target selectors: which hosts of the inventory an action goes to.

A selector is compiled once (globs and regexes included) and then matched against every host.
Grammar, parsed by hand so each error can point at its column (precedence: not > and > or)::

    selector  := or_expr END
    or_expr   := and_expr ("or" and_expr)*
    and_expr  := not_expr ("and" not_expr)*
    not_expr  := "not" not_expr | primary
    primary   := "(" or_expr ")" | "all" | KEY OP VALUE | KEY ["not"] "in" list
    list      := "(" VALUE ("," VALUE)* ")"
    OP        := "=" | "!=" | "~" | "!~"

``=``, ``!=`` and ``in`` compare with shell globs (``name=web-*``, case-sensitive, whole value);
``~`` and ``!~`` search with a Python regex (``name~'^canary'``). VALUE is a bare word
(letters, digits and ``_ . * ? - / : [ ]``) or a string in single or double quotes, without
escapes (use the other quote to include one). Keywords are lowercase and never quoted, so
``role='and'`` compares with the word "and".

KEY ``name`` is the host name and ``address`` its address; any other key is a tag. A host without
that tag matches no comparison on it, not even ``!=``, ``!~`` or ``not in``: ``env!=prod`` selects
hosts that have an ``env`` tag other than prod. Use ``not env=prod`` to include untagged hosts.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from protocol.errors import SelectorError

#: Words with a meaning in the grammar; inventory tag names may not use them.
KEYWORDS = frozenset({"all", "and", "or", "not", "in"})

#: Parentheses plus ``not`` nested deeper than this are refused rather than overflowing the stack.
MAX_DEPTH = 100

_WORD = re.compile(r"[A-Za-z0-9_.*?\-/:\[\]]+")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_OPERATORS = ("!=", "!~", "=", "~")  # two-character operators first
_HINTS = {"&": "use 'and'", "|": "use 'or'", "!": "use 'not', '!=' or '!~'"}

TokenKind = Literal["word", "string", "op", "(", ")", ",", "end"]


class Selectable(Protocol):
    """What a selector reads from a host; ``inventory.Host`` is one."""

    @property
    def name(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def tags(self) -> Mapping[str, str]: ...


@dataclass(frozen=True, slots=True)
class _Token:
    kind: TokenKind
    text: str  # as written, quotes included
    value: str  # quotes removed
    column: int  # 1-based


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(text):
        char, column = text[i], i + 1
        if char.isspace():
            i += 1
        elif char in "'\"":
            end = text.find(char, i + 1)
            if end < 0:
                raise SelectorError(f"unterminated string (no closing {char})", text, column)
            tokens.append(_Token("string", text[i : end + 1], text[i + 1 : end], column))
            i = end + 1
        elif char in "(),":
            tokens.append(_Token(char, char, char, column))  # type: ignore[arg-type]
            i += 1
        elif op := next((op for op in _OPERATORS if text.startswith(op, i)), None):
            tokens.append(_Token("op", op, op, column))
            i += len(op)
        elif word := _WORD.match(text, i):
            tokens.append(_Token("word", word.group(), word.group(), column))
            i = word.end()
        else:
            hint = _HINTS.get(char, "put a value that holds it in quotes")
            raise SelectorError(f"unexpected character {char!r} ({hint})", text, column)
    tokens.append(_Token("end", "", "", len(text) + 1))
    return tokens


class _Node(Protocol):
    def matches(self, host: Selectable) -> bool: ...


@dataclass(frozen=True, slots=True)
class _All:
    def matches(self, host: Selectable) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class _Not:
    child: _Node

    def matches(self, host: Selectable) -> bool:
        return not self.child.matches(host)


@dataclass(frozen=True, slots=True)
class _And:
    children: tuple[_Node, ...]

    def matches(self, host: Selectable) -> bool:
        return all(child.matches(host) for child in self.children)


@dataclass(frozen=True, slots=True)
class _Or:
    children: tuple[_Node, ...]

    def matches(self, host: Selectable) -> bool:
        return any(child.matches(host) for child in self.children)


@dataclass(frozen=True, slots=True)
class _Compare:
    """``key`` against compiled patterns: globs are whole-value matches, regexes searches."""

    key: str
    patterns: tuple[re.Pattern[str], ...]
    search: bool
    negate: bool

    def matches(self, host: Selectable) -> bool:
        if self.key == "name":
            value: str | None = host.name
        elif self.key == "address":
            value = host.address
        else:
            value = host.tags.get(self.key)
        if value is None:
            return False  # an unknown tag matches nothing, negated or not
        if self.search:
            hit = any(p.search(value) for p in self.patterns)
        else:
            hit = any(p.match(value) for p in self.patterns)
        return hit != self.negate


class Selector:
    """A compiled target selector; ``matches(host)`` does no parsing."""

    __slots__ = ("_root", "text")

    def __init__(self, text: str, root: _Node) -> None:
        self.text = text
        self._root = root

    def matches(self, host: Selectable) -> bool:
        """Whether ``host`` is one of the targets."""
        return self._root.matches(host)

    def __repr__(self) -> str:
        return f"Selector({self.text!r})"

    def keys(self) -> set[str]:
        """The keys the selector compares (tags, ``name``, ``address``)."""
        return _keys(self._root)


def _keys(node: _Node) -> set[str]:
    if isinstance(node, _Compare):
        return {node.key}
    children = (node.child,) if isinstance(node, _Not) else getattr(node, "children", ())
    return set().union(*(_keys(child) for child in children))


def compile_selector(text: str) -> Selector:
    """Parse ``text`` once; SelectorError (with the 1-based column) if it is not a selector."""
    return Selector(text, _Parser(text).parse())


def _describe(token: _Token) -> str:
    return "the end of the selector" if token.kind == "end" else repr(token.text)


class _Parser:
    """Recursive descent over the token list; one method per grammar rule."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0
        self.depth = 0

    def parse(self) -> _Node:
        if self.tokens[0].kind == "end":
            raise SelectorError("empty selector (use 'all' for every host)", self.text, 1)
        node = self._or()
        token = self._peek()
        if token.kind == ")":
            raise self._error("unbalanced ')' (no '(' to close)", token)
        if token.kind != "end":
            raise self._error(f"expected 'and', 'or' or the end, got {_describe(token)}", token)
        return node

    def _peek(self) -> _Token:
        return self.tokens[self.pos]

    def _next(self) -> _Token:
        token = self.tokens[self.pos]
        if token.kind != "end":
            self.pos += 1
        return token

    def _keyword(self, word: str) -> bool:
        """Consume the keyword ``word`` if it comes next."""
        token = self._peek()
        if token.kind == "word" and token.value == word:
            self.pos += 1
            return True
        return False

    def _error(self, message: str, token: _Token) -> SelectorError:
        return SelectorError(message, self.text, token.column)

    def _enter(self, token: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self._error(f"nested deeper than {MAX_DEPTH} levels", token)

    def _or(self) -> _Node:
        children = [self._and()]
        while self._keyword("or"):
            children.append(self._and())
        return children[0] if len(children) == 1 else _Or(tuple(children))

    def _and(self) -> _Node:
        children = [self._not()]
        while self._keyword("and"):
            children.append(self._not())
        return children[0] if len(children) == 1 else _And(tuple(children))

    def _not(self) -> _Node:
        token = self._peek()
        if not self._keyword("not"):
            return self._primary()
        self._enter(token)
        node = _Not(self._not())
        self.depth -= 1
        return node

    def _primary(self) -> _Node:
        token = self._next()
        if token.kind == "(":
            self._enter(token)
            node = self._or()
            close = self._next()
            if close.kind != ")":
                raise self._error(
                    f"expected ')' to close the '(' at column {token.column}, "
                    f"got {_describe(close)}",
                    close,
                )
            self.depth -= 1
            return node
        if token.kind == "word" and token.value == "all":
            return _All()
        if token.kind == "word" and token.value not in KEYWORDS:
            return self._condition(token)
        raise self._error(f"expected a condition like env=prod, got {_describe(token)}", token)

    def _condition(self, key: _Token) -> _Node:
        if not _KEY.fullmatch(key.value):
            raise self._error(f"{key.text!r} is not a tag name", key)
        token = self._next()
        if token.kind == "op":
            value = self._value(f"after {token.text!r}")
            search = token.value in ("~", "!~")
            pattern = self._regex(value) if search else self._glob(value)
            return _Compare(key.value, (pattern,), search, token.value.startswith("!"))
        negate = token.kind == "word" and token.value == "not"
        if negate:
            token = self._next()
        if token.kind == "word" and token.value == "in":
            return _Compare(key.value, self._glob_list(), search=False, negate=negate)
        if negate:
            raise self._error(f"expected 'in' after 'not', got {_describe(token)}", token)
        raise self._error(
            f"expected an operator (=, !=, ~, !~, in) after {key.text!r}, got {_describe(token)}",
            token,
        )

    def _glob_list(self) -> tuple[re.Pattern[str], ...]:
        token = self._next()
        if token.kind != "(":
            raise self._error(f"expected '(' after 'in', got {_describe(token)}", token)
        patterns = [self._glob(self._value("in the list"))]
        while (token := self._next()).kind == ",":
            patterns.append(self._glob(self._value("after ','")))
        if token.kind != ")":
            raise self._error(f"expected ',' or ')' in the list, got {_describe(token)}", token)
        return tuple(patterns)

    def _value(self, where: str) -> _Token:
        token = self._next()
        if token.kind not in ("word", "string"):
            raise self._error(f"expected a value {where}, got {_describe(token)}", token)
        return token

    def _glob(self, token: _Token) -> re.Pattern[str]:
        try:
            return re.compile(fnmatch.translate(token.value))
        except (re.error, OverflowError, RecursionError) as err:
            raise self._error(f"bad glob pattern: {err}", token) from None

    def _regex(self, token: _Token) -> re.Pattern[str]:
        try:
            return re.compile(token.value)
        except re.error as err:
            offset = (err.pos or 0) + (1 if token.kind == "string" else 0)
            column = token.column + min(offset, len(token.text) - 1)
            raise SelectorError(f"bad regular expression: {err.msg}", self.text, column) from None
        except (OverflowError, RecursionError) as err:
            raise self._error(f"bad regular expression: {err}", token) from None
