"""Repeatable flags are lifted out of the command line in one pass (console/cli/argv.py) and come
back checked exactly as argparse checks them."""

from __future__ import annotations

import pytest

from console.cli.argv import take_repeated
from console.cli.main import build_parser, parse


def test_forty_thousand_paths_are_all_kept_in_order() -> None:
    paths = [f"/srv/p{i}" for i in range(40_000)]
    argv = ["-i", "run", "run", "file", "-t", "all", "--name=a", "--max-depth", "3"]
    argv += [word for path in paths for word in ("--paths", path)] + ["--paths=/last"]
    rest, (leaf, taken) = take_repeated(build_parser(), argv)
    assert leaf.prog == "spyglass run file"
    assert rest == ["-i", "run", "run", "file", "-t", "all", "--max-depth", "3"]
    assert sum(map(len, taken.values())) == 40_002  # argparse sees none of them
    args = parse(build_parser(), argv)
    assert args.paths == [*paths, "/last"] and args.name == ["a"]
    assert (args.inventory, args.target, args.max_depth) == ("run", "all", 3)


def test_lifted_values_are_checked_as_argparse_checks_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = parse(
        build_parser(), ["run", "yara", "--rules", "r", "--pids", "12", "--pids=13", "-t", "x"]
    )
    assert args.pids == [12, 13]
    for argv, error in (
        (["run", "yara", "--rules", "r", "--pids", "x"], "argument --pids: invalid int value"),
        (["run", "file", "--mismatch", "nope"], "argument --mismatch: invalid choice: 'nope'"),
        (["run", "file", "--name", "-x"], "argument --name: expected one argument"),
    ):
        with pytest.raises(SystemExit) as exited:
            parse(build_parser(), [*argv, "-t", "all"])
        assert exited.value.code == 2 and error in capsys.readouterr().err


def test_after_a_double_dash_nothing_is_lifted() -> None:
    rest, (_, taken) = take_repeated(build_parser(), ["run", "file", "--", "--paths", "/x"])
    assert rest == ["run", "file", "--", "--paths", "/x"] and taken == {}
