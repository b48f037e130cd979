"""The declaration mechanism: one Param list gives validation, flags, spec and help text."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from modules.base import CollectingContext, Column, LimitReached, Module, Param, RunContext
from modules.kinds import parse_age, parse_size
from protocol.errors import ParamError, SpyglassError


class Demo(Module):
    """A module exercising every kind of parameter."""

    name = "demo"
    summary = "A module for tests"
    params = (
        Param("paths", "path", "where", repeatable=True, required=True),
        Param("name", "regex", "names", repeatable=True),
        Param("size", "size", "size bound", repeatable=True),
        Param("mtime", "age", "age bound", repeatable=True),
        Param("sha256", "hash", "digest", repeatable=True),
        Param("exe_md5", "hash", "digest of the exe"),
        Param("net", "cidr", "network"),
        Param("addr", "ip", "address"),
        Param("port", "port", "port"),
        Param("bytes", "hexbytes", "bytes"),
        Param("label", "string", "free text"),
        Param("limit", "int", "a limit", default=10, minimum=1),
        Param("fast", "bool", "a switch, off by default"),
        Param("xdev", "bool", "a switch, on by default", default=True),
        Param("invert", "filter", "filters to invert", repeatable=True, choices=("name", "size")),
    )
    columns = (Column("path", "a path", "path"), Column("n", "a count", "int"))

    def run(self, params: dict[str, Any], ctx: RunContext) -> dict[str, int]:
        ctx.emit({"path": params["paths"][0], "n": 1})
        return {"rows": 1}


DEMO = Demo()


def check(**params: Any) -> dict[str, Any]:
    return DEMO.validate({"paths": ["/srv"], **params})


def test_defaults_are_filled_in() -> None:
    assert check() == {
        "paths": ["/srv"],
        "name": [],
        "size": [],
        "mtime": [],
        "sha256": [],
        "exe_md5": None,
        "net": None,
        "addr": None,
        "port": None,
        "bytes": None,
        "label": None,
        "limit": 10,
        "fast": False,
        "xdev": True,
        "invert": [],
    }


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"paths": ["/srv"], "nope": 1}, "demo: nope: unknown parameter"),
        ({}, "demo: paths: missing required parameter"),
        ({"paths": "/srv"}, "demo: paths: expected an array, got string"),
        ({"paths": []}, "demo: paths: expected at least one value"),
        ({"paths": ["srv"]}, "demo: paths[0]: must be an absolute path: 'srv'"),
        ({"paths": ["/a", 3]}, "demo: paths[1]: expected a string, got integer"),
        (
            {"paths": ["/srv"], "name": ["ok", "["]},
            "demo: name[1]: invalid regex: missing ]: [",
        ),
        ({"paths": ["/srv"], "name": "^a"}, "demo: name: expected an array, got string"),
        (
            {"paths": ["/srv"], "size": ["10M"]},
            "demo: size[0]: invalid size '10M': expected <N, >N or =N with optional k/M/G/T",
        ),
        (
            {"paths": ["/srv"], "mtime": ["<2y"]},
            "demo: mtime[0]: invalid age '<2y': expected <N or >N with unit s, m, h, d or w",
        ),
        ({"paths": ["/srv"], "sha256": ["abc"]}, "demo: sha256[0]: expected 64 hex digits, got 3"),
        (
            {"paths": ["/srv"], "exe_md5": "zz" * 16},
            f"demo: exe_md5: not hexadecimal: '{'zz' * 16}'",
        ),
        (
            {"paths": ["/srv"], "net": "10.0.0.0/33"},
            "demo: net: not an IP address or CIDR network: '10.0.0.0/33'",
        ),
        ({"paths": ["/srv"], "addr": "10.0.0.0/8"}, "demo: addr: not an IP address: '10.0.0.0/8'"),
        ({"paths": ["/srv"], "port": 70000}, "demo: port: port out of range 0-65535: 70000"),
        ({"paths": ["/srv"], "port": "22"}, "demo: port: expected an integer, got string"),
        (
            {"paths": ["/srv"], "bytes": "abc"},
            "demo: bytes: expected an even number of hex digits: 'abc'",
        ),
        ({"paths": ["/srv"], "limit": 0}, "demo: limit: must be at least 1, got 0"),
        ({"paths": ["/srv"], "limit": True}, "demo: limit: expected an integer, got boolean"),
        ({"paths": ["/srv"], "limit": 2**60}, f"demo: limit: integer out of range ±2^53: {2**60}"),
        ({"paths": ["/srv"], "fast": 1}, "demo: fast: expected a boolean, got integer"),
        ({"paths": ["/srv"], "label": None}, "demo: label: expected a string, got null"),
        (
            {"paths": ["/srv"], "invert": ["mode"]},
            "demo: invert[0]: 'mode' is not one of name, size",
        ),
        ([], "demo: params: expected an object, got array"),
    ],
)
def test_validation_messages(params: Any, message: str) -> None:
    with pytest.raises(ParamError) as err:
        DEMO.validate(params)
    assert str(err.value) == message


def test_valid_values_of_each_kind_pass() -> None:
    params = check(
        size=["<10M", ">1k", "=0"],
        mtime=["<2d", ">30d", "<15m", ">1w", "<10s", "<3h"],
        sha256=["A" * 64],
        net="10.0.0.0/8",
        addr="::1",
        port=0,
        bytes="deadBEEF",
        invert=["size"],
    )
    assert params["sha256"] == ["A" * 64]


def test_size_and_age_parsers_give_bytes_and_seconds() -> None:
    assert parse_size("<10M") == ("<", 10 * 1024**2)
    assert parse_size(">1k") == (">", 1024)
    assert parse_size("=0") == ("=", 0)
    assert parse_size(">2g") == (">", 2 * 1024**3)
    assert parse_age("<2d") == ("<", 2 * 86400)
    assert parse_age(">30d") == (">", 30 * 86400)
    assert parse_age("<1w") == ("<", 7 * 86400)


def parser_for(module: Module) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spyglass run " + module.name, exit_on_error=False)
    module.add_arguments(parser)
    return parser


def test_argparse_flags_come_from_the_declaration() -> None:
    ns = parser_for(DEMO).parse_args(
        [
            "--paths",
            "/a",
            "--paths",
            "/b",
            "--limit",
            "5",
            "--fast",
            "--no-xdev",
            "--invert",
            "size",
        ]
    )
    assert DEMO.params_from_cli(ns) == {
        "paths": ["/a", "/b"],
        "limit": 5,
        "fast": True,
        "xdev": False,
        "invert": ["size"],
    }


def test_argparse_leaves_absent_flags_out() -> None:
    ns = parser_for(DEMO).parse_args(["--paths", "/a"])
    assert DEMO.params_from_cli(ns) == {"paths": ["/a"]}


def test_argparse_rejects_a_bad_choice() -> None:
    with pytest.raises(argparse.ArgumentError):
        parser_for(DEMO).parse_args(["--paths", "/a", "--invert", "mode"])


def test_spec_and_describe() -> None:
    spec = DEMO.spec()
    assert spec["name"] == "demo"
    limit = next(p for p in spec["params"] if p["name"] == "limit")
    assert limit == {
        "name": "limit",
        "flag": "--limit",
        "kind": "int",
        "help": "a limit",
        "repeatable": False,
        "required": False,
        "default": 10,
        "choices": [],
        "minimum": 1,
    }
    assert spec["columns"][0] == {"name": "path", "kind": "path", "help": "a path"}
    text = DEMO.describe()
    assert text.startswith("demo: A module for tests\n")
    assert "--paths PATH" in text and "(required; repeatable)" in text
    assert "--[no-]xdev" in text and "--fast " in text
    assert "(default 10)" in text


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Param("Bad", "string", ""), "parameter name 'Bad' is not [a-z][a-z0-9_]*"),
        (lambda: Param("x", "float", ""), "parameter 'x': unknown kind 'float'"),  # type: ignore[arg-type]
        (lambda: Param("blake", "hash", ""), "hash parameter 'blake' names no known digest"),
        (lambda: Param("inv", "filter", ""), "parameter 'inv': a filter parameter needs choices"),
        (lambda: Column("a-b", ""), "column name 'a-b' is not [a-z][a-z0-9_]*"),
    ],
)
def test_bad_declarations_fail_at_import(make: Any, message: str) -> None:
    with pytest.raises(ValueError) as err:
        make()
    assert str(err.value) == message


def test_duplicate_parameter_names_fail_at_class_creation() -> None:
    with pytest.raises(ValueError, match=r"module twice: duplicate parameter \['a'\]"):

        class Twice(Module):
            name = "twice"
            summary = ""
            params = (Param("a", "string", ""), Param("a", "int", ""))
            columns = (Column("c", ""),)

            def run(self, params: dict[str, Any], ctx: RunContext) -> dict[str, int]:
                return {}


def test_collecting_context_checks_rows_against_columns() -> None:
    ctx = CollectingContext(columns=[c.name for c in DEMO.columns])
    assert DEMO.run(check(), ctx) == {"rows": 1}
    assert ctx.rows == [{"path": "/srv", "n": 1}]
    with pytest.raises(ValueError, match="differ from columns"):
        ctx.emit({"path": "/x", "n": 1, "extra": 2})


def test_collecting_context_cap_raises_limit_reached() -> None:
    ctx = CollectingContext(max_rows=1)
    ctx.emit({"a": 1})
    with pytest.raises(LimitReached) as err:
        ctx.emit({"a": 2})
    assert not isinstance(err.value, SpyglassError)  # a signal that ends the run, not an error
    assert ctx.rows == [{"a": 1}]
    assert not ctx.cancelled()
    ctx.cancel()
    assert ctx.cancelled()
