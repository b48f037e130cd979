"""``spyglass run`` and ``spyglass action``: sign and launch a module, handle prepared envelopes."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console.actions.compose import compose
from console.cli.argv import Append
from console.cli.common import (
    check_before_sending,
    command,
    command_group,
    fan_out_preloaded,
    json_flag,
    launch,
    launch_flags,
    signer,
)
from console.results.provenance import default_name
from console.results.text import plural, printable
from modules.registry import all_modules, get_module
from protocol.envelope import Envelope, load_envelope

if TYPE_CHECKING:
    from console.actions.approvals import SignatureInfo, Verdict
    from modules.base import Module


class _ExtendFromFile(argparse.Action):
    """``--PARAM-from FILE``: one value of a repeatable parameter per line of FILE (``-``:
    stdin); empty lines are skipped."""

    def __init__(self, *args: Any, integers: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.integers = integers

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        try:
            if values == "-":
                lines = sys.stdin.read().splitlines()
            else:
                lines = Path(values).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            parser.error(f"{option}: cannot read {values}: {getattr(err, 'strerror', err)}")
        convert: Any = int if self.integers else str
        try:
            found = [convert(line) for line in lines if line.strip()]
        except ValueError:
            parser.error(f"{option}: {values}: expected one integer per line")
        if getattr(namespace, self.dest, None) is None:
            setattr(namespace, self.dest, [])
        getattr(namespace, self.dest).extend(found)


def add_run(commands: Any) -> None:
    run = commands.add_parser("run", help="sign and launch one module on the targeted hosts")
    run.add_subparsers(dest="module", metavar="MODULE", required=True, action=_ModuleParsers)


class _ModuleParsers(argparse._SubParsersAction):  # type: ignore[type-arg]
    """``spyglass run MODULE``: each module's parser (every module imported, every flag
    declared) is built when the command line reaches ``run``, not for every other command."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._built = False
        self._name_parser_map = self.choices = _BuiltOnFirstLook(self._build)

    def _get_subactions(self) -> list[argparse.Action]:  # `run --help`
        self._build()
        return super()._get_subactions()  # type: ignore[no-any-return]

    def _build(self) -> None:
        if self._built:
            return
        self._built = True
        for module in all_modules():
            sub = self.add_parser(module.name, help=module.summary, description=module.summary)
            _module_flags(sub, module)


class _BuiltOnFirstLook(dict):  # type: ignore[type-arg]
    """The module parsers by name; argparse's first look (``name in choices``) builds them."""

    def __init__(self, build: Any) -> None:
        super().__init__()
        self._build = build

    def __contains__(self, name: object) -> bool:
        self._build()
        return super().__contains__(name)


def _module_flags(sub: argparse.ArgumentParser, module: Module) -> None:
    sub.register("action", "append", Append)
    group = sub.add_argument_group(f"{module.name} parameters")
    for param in module.params:
        param.add_to_argparse(group)
        if param.repeatable:
            group.add_argument(
                f"{param.flag}-from",
                dest=param.name,
                action=_ExtendFromFile,
                integers=param.kind == "int",
                default=argparse.SUPPRESS,
                metavar="FILE",
                help=f"{param.flag} for each line of FILE (- reads stdin)",
            )
    launch_flags(sub, target_required=True)
    sub.add_argument(
        "--action-name",
        help="a name for the action (default: from the module, parameters "
        'and target, e.g. "file paths=/srv name=\\.php$ on env=prod")',
    )
    sub.add_argument("--expire", default="5m", help="lifetime of the action (default 5m)")
    sub.add_argument(
        "--sign-only",
        metavar="FILE",
        type=Path,
        help="write the signed envelope to FILE instead of launching it",
    )
    sub.set_defaults(handler=cmd_run)


def add_action(commands: Any) -> None:
    action_cmds = command_group(commands, "action", "prepared envelopes: sign, launch, show")
    sign = command(
        action_cmds, "sign", cmd_action_sign, help="add your signature to an envelope file"
    )
    sign.add_argument("file", type=Path)
    alaunch = command(action_cmds, "launch", cmd_action_launch, help="launch a signed envelope")
    alaunch.add_argument("file", type=Path)
    launch_flags(alaunch, target_required=False)
    show = command(
        action_cmds,
        "show",
        cmd_action_show,
        help="show an envelope's action and signers, and whether an agent's ACL would accept it",
        description="With --config, exit status 0 if that agent would accept the envelope, "
        "1 if it would reject it.",
    )
    show.add_argument("file", type=Path)
    show.add_argument(
        "--config",
        type=Path,
        metavar="AGENTD_TOML",
        help="an agent configuration: evaluate its keyring and [acl.*] on this envelope",
    )
    json_flag(show, "one JSON object on stdout")


def cmd_run(args: argparse.Namespace) -> int:
    module = get_module(args.module)
    assert module is not None
    params = module.params_from_cli(args)
    name = args.action_name or default_name(args.module, params, args.target)
    action = compose(args.module, params, args.target, args.expire, name)
    check_before_sending(Envelope(action))  # before gpg asks for a passphrase
    if args.sign_only:
        signer(args).sign(Envelope(action)).save(args.sign_only)
        print(
            f"wrote {args.sign_only} (action {action.id}); another approver can "
            f"`spyglass action sign {args.sign_only}`",
            file=sys.stderr,
        )
        return 0
    with fan_out_preloaded():
        envelope = signer(args).sign(Envelope(action))
    return launch(args, envelope, args.target)


def cmd_action_sign(args: argparse.Namespace) -> int:
    envelope = signer(args).sign(load_envelope(args.file))
    envelope.save(args.file)
    print(f"{args.file}: now {plural(len(envelope.signatures), 'signature')}", file=sys.stderr)
    return 0


def cmd_action_launch(args: argparse.Namespace) -> int:
    envelope = load_envelope(args.file)
    return launch(args, envelope, args.target or envelope.action.target)


def cmd_action_show(args: argparse.Namespace) -> int:
    from console.actions.approvals import inspect_envelope, read_agent_policy

    envelope = load_envelope(args.file)
    agent = read_agent_policy(args.config) if args.config else None
    infos, verdict = inspect_envelope(envelope, os.environ.get("GNUPGHOME"), agent)
    action = envelope.action
    if args.json:
        doc: dict[str, Any] = {
            "action": action.to_dict(),
            "signatures": [i.to_json() for i in infos],
        }
        if verdict is not None:
            doc["agent"] = verdict.to_json()
        print(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        _print_action(envelope, infos)
        if verdict is not None:
            _print_verdict(verdict)
    if verdict is None:
        return 0
    return 0 if verdict.accepted else 1


def _print_action(envelope: Envelope, infos: list[SignatureInfo]) -> None:
    action = envelope.action
    now = int(time.time())
    left = action.expire_after - now
    when = "expired" if left < 0 else f"expires in {left} s"
    print(f"action {action.id}: {printable(action.name)}")
    print(f"  target: {printable(action.target)}")
    if action.description:
        print(f"  description: {printable(action.description)}")
    print(
        f"  valid {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(action.valid_from))} to "
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(action.expire_after))} ({when})"
    )
    for i, op in enumerate(action.operations):
        params = json.dumps(op.params, ensure_ascii=False, sort_keys=True)
        print(f"  operation {i}: {op.module} {printable(params)}")
    print(f"signatures: {len(infos)}")
    for number, info in enumerate(infos, 1):
        who = info.fingerprint or "unknown key"
        uid = f" {printable(info.uid)}" if info.uid else ""
        print(f"  {number}. {who}{uid}: {info.status} ({info.seen_by})")


def _print_verdict(verdict: Verdict) -> None:
    print(f"agent {printable(verdict.agent.name)} ({verdict.agent.path}):")
    for m in verdict.modules:
        signers = ", ".join(s[-16:] for s in m.signers) or "no signer it counts"
        mark = "ok" if m.ok else "NOT ENOUGH"
        print(
            f"  {m.module}: {m.rule} needs weight {m.minimum_weight}, signers weigh {m.weight} "
            f"({signers}): {mark}"
        )
    for warning in verdict.warnings:
        print(f"  warning: {warning}")
    if verdict.accepted:
        print("  verdict: would be accepted")
    else:
        print(f"  verdict: would be rejected: {verdict.reason}: {printable(verdict.detail)}")
