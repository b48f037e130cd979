"""Repeatable flags at any count.

argparse (Python 3.11) answers each option of a command line with a scan over the positions of
all its options, so 40,000 ``--paths`` took over a minute, and its ``append`` copies the list at
each occurrence. Repeatable parameters use ``Append`` instead, and ``take_repeated`` lifts their
occurrences out of the command line in one pass before argparse parses the rest;
``give_back`` then adds them to the parsed namespace, checked as argparse checks them.
"""

from __future__ import annotations

import argparse
from typing import Any


class Append(argparse.Action):
    """``append`` in place. A required parameter may also come from its ``-from`` file: the
    module's validation says when it is missing from both."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "required": False})

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        if getattr(namespace, self.dest, None) is None:
            setattr(namespace, self.dest, [])
        getattr(namespace, self.dest).append(values)


Taken = tuple[argparse.ArgumentParser, dict[Append, list[str]]]


def take_repeated(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[list[str], Taken]:
    """``argv`` without the ``--flag VALUE`` and ``--flag=VALUE`` occurrences of the repeatable
    flags of the subcommand it names, and those values by flag. A flag whose value looks like
    an option stays, for argparse to report."""
    leaf, start = _subcommand(parser, argv)
    flags = {o: a for a in leaf._actions if isinstance(a, Append) for o in a.option_strings}
    rest: list[str] = list(argv[:start])
    taken: dict[Append, list[str]] = {}
    i = start
    while i < len(argv):
        word = argv[i]
        if word == "--":
            rest += argv[i:]
            break
        name, equals, value = word.partition("=")
        action = flags.get(name)
        if action is not None and equals:
            taken.setdefault(action, []).append(value)
            i += 1
        elif action is not None and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            taken.setdefault(action, []).append(argv[i + 1])
            i += 2
        else:
            rest.append(word)
            i += 1
    return rest, (leaf, taken)


def give_back(args: argparse.Namespace, taken: Taken) -> None:
    """Add the lifted values to ``args``, converted and checked by the subcommand's parser."""
    leaf, values = taken
    for action, found in values.items():
        for value in found:
            try:
                checked = leaf._get_values(action, [value])
            except argparse.ArgumentError as err:
                leaf.error(str(err))
            action(leaf, args, checked, action.option_strings[0])


def _subcommand(
    parser: argparse.ArgumentParser, argv: list[str]
) -> tuple[argparse.ArgumentParser, int]:
    """The parser of the (sub)subcommand ``argv`` names, and where its arguments start."""
    i = start = 0
    while i < len(argv):
        word = argv[i]
        action = parser._option_string_actions.get(word)
        if action is not None:
            i += 2 if action.nargs is None else 1  # an option's value is not a command
            continue
        if word.startswith("-"):
            i += 1
            continue
        commands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not commands or word not in commands[0].choices:
            break
        parser = commands[0].choices[word]
        i = start = i + 1
    return parser, start
