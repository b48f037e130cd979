"""The file module's parameters: DESIGN §4's list, exact validation messages, CLI flags."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from modules.registry import get_module
from protocol.errors import ParamError

FILE = get_module("file")
assert FILE is not None


def test_every_parameter_of_design_section_4() -> None:
    assert [p.name for p in FILE.params] == [
        "paths",
        "name",
        "path_re",
        "size",
        "mtime",
        "mode",
        "content",
        "md5",
        "sha1",
        "sha256",
        "sha512",
        "sha3_256",
        "match_any",
        "macroal",
        "mismatch",
        "max_depth",
        "match_limit",
        "max_file_size",
        "decompress",
        "return_sha256",
        "xdev",
        "max_errors",
    ]
    assert [c.name for c in FILE.columns] == ["path", "size", "mode", "mtime", "sha256", "matched"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"paths": ["/"], "colour": "red"}, "file: colour: unknown parameter"),
        ({}, "file: paths: missing required parameter"),
        ({"paths": "/etc"}, "file: paths: expected an array, got string"),
        ({"paths": ["/"], "name": "^a"}, "file: name: expected an array, got string"),
        ({"paths": ["etc"]}, "file: paths[0]: must be an absolute path: 'etc'"),
        (
            {"paths": ["/"], "name": ["["]},
            "file: name[0]: invalid regex: missing ]: [",
        ),
        ({"paths": ["/"], "sha256": ["abc"]}, "file: sha256[0]: expected 64 hex digits, got 3"),
        ({"paths": ["/"], "md5": ["0" * 64]}, "file: md5[0]: expected 32 hex digits, got 64"),
        (
            {"paths": ["/"], "content": ["\\u00e9"]},
            "file: content[0]: invalid regex: invalid escape sequence: \\u",
        ),
        ({"paths": ["/"], "match_limit": 0}, "file: match_limit: must be at least 1, got 0"),
        ({"paths": ["/"], "xdev": "no"}, "file: xdev: expected a boolean, got string"),
        (
            {"paths": ["/"], "mismatch": ["colour"]},
            "file: mismatch[0]: 'colour' is not one of name, path_re, size, mtime, mode, content, "
            "md5, sha1, sha256, sha512, sha3_256",
        ),
    ],
)
def test_validation_messages(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ParamError) as err:
        FILE.validate(params)
    assert str(err.value) == message


def test_defaults() -> None:
    params = FILE.validate({"paths": ["/"]})
    assert params["match_limit"] == 1000 and params["xdev"] is True and params["max_errors"] == 100
    assert params["match_any"] is False and params["name"] == [] and params["max_depth"] is None


def test_flags_from_the_declaration() -> None:
    parser = argparse.ArgumentParser(exit_on_error=False)
    FILE.add_arguments(parser)
    ns = parser.parse_args(["--paths", "/srv", "--name", "^a", "--no-xdev"])
    given = FILE.params_from_cli(ns)
    assert given == {"paths": ["/srv"], "name": ["^a"], "xdev": False}
    assert FILE.cli_args(given) == ["--paths", "/srv", "--name", "^a", "--no-xdev"]
    ns = parser.parse_args(
        [
            "--paths",
            "/",
            "--sha3-256",
            "ab" * 32,
            "--path-re",
            "x",
            "--match-any",
            "--max-depth",
            "3",
        ]
    )
    assert FILE.validate(FILE.params_from_cli(ns))["sha3_256"] == ["ab" * 32]
    with pytest.raises(argparse.ArgumentError):
        parser.parse_args(["--paths", "/", "--max-depth", "three"])
