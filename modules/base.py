"""How a module declares itself, once: parameters, result columns, and the run entry point.

From the one declaration come validation (console and agent), the ``spyglass run MODULE`` flags,
the TUI form, ``spyglass modules show NAME [--json]`` and the result table columns. This is the
contract ``agentd`` and ``console`` are written against; keep the names stable.
"""

from __future__ import annotations

import argparse
import re
import shlex
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from modules.bounds import MAX_ERROR_TEXT, cut_text
from modules.context import CollectingContext, LimitReached, RunContext
from modules.kinds import CHECKS, JSON_TYPES, Kind, hash_name
from protocol.errors import ParamError

__all__ = [
    "CollectingContext",
    "Column",
    "ColumnKind",
    "Kind",
    "LimitReached",
    "Module",
    "Needs",
    "Param",
    "RunContext",
]

#: Names of modules, parameters and columns: valid as a CLI flag (with ``-`` for ``_``), a JSON
#: key and a Textual CSS id.
NAME_RE = re.compile(r"[a-z][a-z0-9_]*")

ColumnKind = Literal["text", "int", "time", "path", "addr", "list", "bool", "json"]

_JSON_NAMES = {str: "a string", int: "an integer", bool: "a boolean", list: "an array"}


def _json_type_name(value: object) -> str:
    """The JSON name of a decoded value's type, for messages."""
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array"}
    return names.get(type(value), "null" if value is None else "object")


@dataclass(frozen=True)
class Param:
    """One module parameter."""

    name: str
    """JSON key; the CLI flag is ``--`` + name with ``_`` turned into ``-``."""
    kind: Kind
    """What a value looks like; decides the JSON type and the check (see ``modules.kinds``)."""
    help: str
    """One line for ``--help``, the TUI form and ``modules show``."""
    repeatable: bool = False
    """Values come as a JSON array (even with one value); the CLI flag may be repeated."""
    required: bool = False
    default: Any = None
    """Value when not given; a tuple for repeatable params (validate returns a list)."""
    choices: tuple[str, ...] = ()
    """Allowed values, if closed (``filter`` params list the module's filter names)."""
    minimum: int | None = None
    """Lowest allowed value of an integer parameter."""

    def __post_init__(self) -> None:
        if not NAME_RE.fullmatch(self.name):
            raise ValueError(f"parameter name {self.name!r} is not [a-z][a-z0-9_]*")
        if self.kind not in CHECKS:
            raise ValueError(f"parameter {self.name!r}: unknown kind {self.kind!r}")
        if self.kind == "hash":
            hash_name(self.name)
        if self.kind == "bool" and self.default is None:
            object.__setattr__(self, "default", False)  # a switch is off unless declared on
        if self.kind == "filter" and not self.choices:
            raise ValueError(f"parameter {self.name!r}: a filter parameter needs choices")

    @property
    def flag(self) -> str:
        """The command-line flag, e.g. ``--path-re``."""
        return "--" + self.name.replace("_", "-")

    def default_value(self) -> Any:
        """The value ``Module.validate`` fills in when the parameter is absent (a fresh list for
        repeatable params, so callers may mutate it)."""
        if self.repeatable:
            return list(self.default or ())
        return self.default

    def validate(self, value: Any) -> Any:
        """Check one parameter's JSON value and return it; ParamError names the parameter (and the
        index within an array), e.g. ``name[0]: invalid regex: ...``."""
        if not self.repeatable:
            if self.required and value == "":
                raise ParamError(f"{self.name}: must not be empty")
            self._check_one(value, self.name)
            return value
        if not isinstance(value, list):
            raise ParamError(f"{self.name}: expected an array, got {_json_type_name(value)}")
        if self.required and not value:
            raise ParamError(f"{self.name}: expected at least one value")
        for i, item in enumerate(value):
            self._check_one(item, f"{self.name}[{i}]")
        return value

    def _check_one(self, value: Any, where: str) -> None:
        want = JSON_TYPES.get(self.kind, str)
        if type(value) is not want:  # exact: a JSON boolean is no integer
            raise ParamError(f"{where}: expected {_JSON_NAMES[want]}, got {_json_type_name(value)}")
        if self.choices and value not in self.choices:
            raise ParamError(f"{where}: {value!r} is not one of {', '.join(self.choices)}")
        if self.minimum is not None and isinstance(value, int) and value < self.minimum:
            raise ParamError(f"{where}: must be at least {self.minimum}, got {value}")
        try:
            CHECKS[self.kind](value, self.name)
        except ValueError as err:
            raise ParamError(f"{where}: {err}") from None
        except Exception as err:  # a checker's own limit (recursion, overflow): still invalid
            raise ParamError(f"{where}: cannot be checked: {type(err).__name__}: {err}") from None

    def add_to_argparse(self, parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
        """Add this parameter's flag; absent flags leave no attribute (see
        ``Module.params_from_cli``), so defaults stay owned by ``validate``."""
        kw: dict[str, Any] = {
            "dest": self.name,
            "help": self.help.replace("%", "%%"),
            "default": argparse.SUPPRESS,
            "required": self.required,
        }
        if self.kind == "bool":
            action = argparse.BooleanOptionalAction if self.default else "store_true"
            parser.add_argument(self.flag, action=action, **kw)
            return
        kw["metavar"] = self.kind.upper()
        if JSON_TYPES.get(self.kind) is int:
            kw["type"] = int
        if self.choices:
            kw["choices"] = self.choices
        parser.add_argument(self.flag, action="append" if self.repeatable else "store", **kw)

    @classmethod
    def each(cls, kind: Kind, **helps: str) -> tuple[Param, ...]:
        """Repeatable parameters of one kind, one per ``name="help"``: a search's filters."""
        return tuple(cls(name, kind, text, repeatable=True) for name, text in helps.items())

    def to_json(self) -> dict[str, Any]:
        """The parameter's entry in ``Module.spec()``."""
        default = list(self.default) if isinstance(self.default, tuple) else self.default
        return {
            "name": self.name,
            "flag": self.flag,
            "kind": self.kind,
            "help": self.help,
            "repeatable": self.repeatable,
            "required": self.required,
            "default": default,
            "choices": list(self.choices),
            "minimum": self.minimum,
        }


@dataclass(frozen=True)
class Needs:
    """What a module's child may touch beyond reading below the root; drives its confinement
    (``agentd.confine``). Everything not declared is denied by the kernel."""

    read: tuple[str, ...] = ()
    """Absolute paths of the live host readable (never writable) whatever the root, e.g.
    ``/proc`` (where Landlock hides what needs ptrace rights over other processes)."""
    execute: tuple[str, ...] = ()
    """Tools the module runs (names looked up in PATH, or absolute paths): only those may be
    executed, and they inherit the child's confinement."""
    sockets: tuple[Literal["unix", "netlink"], ...] = ()
    """Socket families beyond none (AF_UNIX, AF_NETLINK); TCP and UDP are denied unless
    ``network`` declares them."""
    network: tuple[Literal["tcp", "udp"], ...] = ()
    """Outbound IPv4/IPv6 sockets the module opens itself (``ping``, ``timedrift``'s NTP):
    stream sockets for ``tcp``, datagram sockets (UDP, unprivileged ICMP) for ``udp``, never
    raw ones. TCP may connect only to the ports ``Module.connect_ports`` names (Landlock ABI
    4+); no layer can filter by address (docs/security.md)."""
    processes: bool = False
    """Inspects other processes (``/proc/PID/fd``, ``exe``, ``mem``): keeps CAP_SYS_PTRACE and
    takes, before Landlock, what its ptrace scoping would hide (``Module.snapshot``)."""


@dataclass(frozen=True)
class Column:
    """One column of a module's result rows."""

    name: str
    help: str
    kind: ColumnKind = "text"
    """How front ends render and sort it: ``time`` is epoch seconds; ``path`` and ``addr`` are
    masked in privacy mode; ``list`` is a JSON array of strings; ``json`` is any other JSON
    value (objects, arrays of objects), kept whole in JSON output and shown as one line of text
    in tables."""

    def __post_init__(self) -> None:
        if not NAME_RE.fullmatch(self.name):
            raise ValueError(f"column name {self.name!r} is not [a-z][a-z0-9_]*")

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "kind": self.kind, "help": self.help}


class Module(ABC):
    """An investigation module: a declaration plus ``run``.

    Subclasses set ``name``, ``summary``, ``params`` and ``columns`` as class attributes and
    implement ``run``; the declaration is checked when the subclass is created.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    params: ClassVar[tuple[Param, ...]] = ()
    columns: ClassVar[tuple[Column, ...]] = ()
    needs: ClassVar[Needs] = Needs()
    """What the module's child may touch beyond reading below the root (see ``Needs``)."""
    default_weight: ClassVar[int] = 1
    """The minimum weight an agent asks for this module when its ACL has no rule of its own for
    it (instead of ``[acl.default]``'s): 2 for the powerful ones, two approvers."""
    example: ClassVar[dict[str, Any]] = {}
    """Params of a typical run: shown by ``describe`` and run by the generic module tests
    (against ``tests/data/modules/root``), so it must validate."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            return  # an intermediate base class, not a module
        if not NAME_RE.fullmatch(cls.name):
            raise ValueError(f"module name {cls.name!r} is not [a-z][a-z0-9_]*")
        for what, names in (
            ("parameter", [p.name for p in cls.params]),
            ("column", [c.name for c in cls.columns]),
        ):
            dupes = {n for n in names if names.count(n) > 1}
            if dupes:
                raise ValueError(f"module {cls.name}: duplicate {what} {sorted(dupes)}")
        if not cls.columns:
            raise ValueError(f"module {cls.name}: no result columns declared")

    def validate(self, raw: Any) -> dict[str, Any]:
        """Strictly check JSON params (unknown keys, types, kinds, required) and return them
        with defaults filled in; ParamError reads ``MODULE: PARAM: problem``. Whatever goes
        wrong while checking, the caller gets a ParamError (the agent answers invalid-params,
        the console prints one line), with a message short enough for any frame."""
        try:
            return self._validate(raw)
        except ParamError as err:
            error = err.of(self.name)
        except Exception as err:  # a check spanning parameters failed in an unforeseen way
            error = ParamError(f"params: cannot be checked: {type(err).__name__}: {err}")
            error = error.of(self.name)
        problem = cut_text(error.problem, MAX_ERROR_TEXT)
        raise ParamError(problem, param=error.param, module=error.module) from None

    def _validate(self, raw: Any) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise ParamError(f"params: expected an object, got {_json_type_name(raw)}")
        known = {p.name for p in self.params}
        unknown = sorted(str(k) for k in raw if k not in known)
        if unknown:
            raise ParamError(f"{unknown[0]}: unknown parameter")
        out: dict[str, Any] = {}
        for p in self.params:
            if p.name in raw:
                out[p.name] = p.validate(raw[p.name])
            elif p.required:
                raise ParamError(f"{p.name}: missing required parameter")
            else:
                out[p.name] = p.default_value()
        self.check(out)
        return out

    def connect_ports(self, params: dict[str, Any]) -> tuple[int, ...]:
        """The TCP ports an operation with these (validated, signed) params may connect to:
        its child's Landlock ruleset allows those and no other (a module declaring ``tcp``)."""
        return ()

    def snapshot(self, params: dict[str, Any]) -> Any:
        """For a module declaring ``Needs.processes``: what Landlock's ptrace scoping will hide
        (other processes' descriptors and links, ``modules.proc_snapshot``), taken in the
        operation's child before Landlock, from which of these validated, signed params are
        given, never from what a value says. ``run`` finds it in ``RunContext.snapshot``, or
        takes it itself when run in place. None by default."""
        return None

    def stamp(self, params: dict[str, Any]) -> dict[str, Any]:
        """The params with what the console fills in itself when it composes the action (so it
        is signed with the rest), e.g. ``timedrift``'s send time; the user's values win."""
        return params

    def check(self, params: dict[str, Any]) -> None:
        """Rules spanning several parameters, or beyond the kind; raise ParamError("PARAM: ...").
        Runs after every parameter validated on its own."""
        return None

    def spec(self) -> dict[str, Any]:
        """JSON for ``spyglass modules show NAME --json`` (and the TUI form)."""
        return {
            "name": self.name,
            "summary": self.summary,
            "params": [p.to_json() for p in self.params],
            "columns": [c.to_json() for c in self.columns],
        }

    def describe(self) -> str:
        """Text for ``spyglass modules show NAME``."""
        lines = [f"{self.name}: {self.summary}", "", "parameters:"]
        for p in self.params:
            notes = [w for w, on in (("required", p.required), ("repeatable", p.repeatable)) if on]
            if p.kind == "bool":
                usage = f"--[no-]{p.flag[2:]}" if p.default else p.flag
            else:
                usage = f"{p.flag} {p.kind.upper()}"
                if p.default not in (None, ()):
                    notes.append(f"default {p.to_json()['default']}")
            if p.choices:
                notes.append("one of " + ", ".join(p.choices))
            lines.append(f"  {usage:<24} {p.help}" + (f" ({'; '.join(notes)})" if notes else ""))
        lines += ["", "columns:"]
        lines += [f"  {c.name:<12} {c.kind:<5} {c.help}" for c in self.columns]
        lines += [
            "",
            "example:",
            "  " + shlex.join(["spyglass", "run", self.name, *self.cli_args(self.example)]),
        ]
        return "\n".join(lines)

    def add_arguments(self, parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
        """Add every parameter's flag to ``parser`` (``spyglass run MODULE``)."""
        for p in self.params:
            p.add_to_argparse(parser)

    def params_from_cli(self, namespace: argparse.Namespace) -> dict[str, Any]:
        """The raw params the user gave on the command line (validate them next)."""
        return {
            p.name: getattr(namespace, p.name) for p in self.params if hasattr(namespace, p.name)
        }

    def cli_args(self, params: dict[str, Any]) -> list[str]:
        """The command-line flags that give ``params`` (the inverse of ``params_from_cli``);
        switches left at their default are omitted."""
        argv: list[str] = []
        for p in self.params:
            if p.name not in params:
                continue
            value = params[p.name]
            if p.kind == "bool":
                if value != p.default:
                    argv.append(p.flag if value else f"--no-{p.flag[2:]}")
                continue
            for item in value if p.repeatable else [value]:
                argv += [p.flag, str(item)]
        return argv

    @abstractmethod
    def run(self, params: dict[str, Any], ctx: RunContext) -> dict[str, int]:
        """Stream rows through ``ctx.emit`` and return the stats counters. ``params`` come from
        ``validate``. Raise ``LimitReached`` (with stats) when ``match_limit`` is reached."""
