"""``spyglass``: the investigator's command line (DESIGN §5).

Exit statuses of ``run`` and ``action launch``: 0 every host answered and something matched;
1 every host answered and nothing matched; 3 some hosts failed (results still printed);
2 nothing was launched, with a one-line reason on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from console import results_cli
from console.compose import compose
from console.dispatch import Summary
from console.investigation import Investigation
from console.lab import lab_down, lab_up
from console.loop import run_async
from console.output import JsonLines, TextOutput, printable
from console.shard import ShardedDispatcher, parse_workers
from console.ssh import Connector, Pool
from console.store import Store, default_store_path
from inventory.loader import load_inventory
from inventory.model import Inventory
from modules.registry import all_modules, get_module
from protocol.envelope import Envelope, load_envelope
from protocol.errors import SpyglassError, UsageError
from protocol.signing import Signer, generate_key

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spyglass", description=__doc__.splitlines()[0])
    parser.add_argument(
        "-i",
        "--inventory",
        default=os.environ.get("SPYGLASS_INVENTORY"),
        help="inventory TOML (env SPYGLASS_INVENTORY)",
    )
    parser.add_argument(
        "--key",
        default=os.environ.get("SPYGLASS_KEY"),
        help="investigator key id or fingerprint (env SPYGLASS_KEY)",
    )
    parser.add_argument(
        "--store",
        default=os.environ.get("SPYGLASS_STORE"),
        help="results database (env SPYGLASS_STORE)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    commands.add_parser("tui", help="the interactive console (the default)")
    run = commands.add_parser("run", help="sign and launch one module on the targeted hosts")
    run_modules = run.add_subparsers(dest="module", metavar="MODULE", required=True)
    for module in all_modules():
        sub = run_modules.add_parser(module.name, help=module.summary, description=module.summary)
        group = sub.add_argument_group(f"{module.name} parameters")
        for param in module.params:
            param.add_to_argparse(group)
        _launch_flags(sub, target_required=True)
        sub.add_argument("--action-name", help="a name for the action (default: MODULE on TARGET)")
        sub.add_argument("--expire", default="5m", help="lifetime of the action (default 5m)")
        sub.add_argument(
            "--sign-only",
            metavar="FILE",
            type=Path,
            help="write the signed envelope to FILE instead of launching it",
        )
        sub.set_defaults(handler=cmd_run)

    action = commands.add_parser("action", help="prepared envelopes: sign, launch, show")
    action_cmds = action.add_subparsers(dest="action_command", required=True)
    sign = action_cmds.add_parser("sign", help="add your signature to an envelope file")
    sign.add_argument("file", type=Path)
    sign.set_defaults(handler=cmd_action_sign)
    launch = action_cmds.add_parser("launch", help="launch a signed envelope")
    launch.add_argument("file", type=Path)
    _launch_flags(launch, target_required=False)
    launch.set_defaults(handler=cmd_action_launch)
    show = action_cmds.add_parser(
        "show",
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
    show.add_argument("--json", action="store_true", help="one JSON object on stdout")
    show.set_defaults(handler=cmd_action_show)

    runbook = commands.add_parser("runbook", help="TOML runbooks of steps, run in order")
    runbook_cmds = runbook.add_subparsers(dest="runbook_command", required=True)
    rcheck = runbook_cmds.add_parser("check", help="validate every step without connecting")
    rcheck.add_argument("file", type=Path)
    rcheck.set_defaults(handler=cmd_runbook_check)
    rrun = runbook_cmds.add_parser("run", help="sign and run the steps, then write a report")
    rrun.add_argument("file", type=Path)
    rrun.add_argument("--json", action="store_true", help="a JSON report instead of Markdown")
    rrun.add_argument(
        "--report", type=Path, metavar="FILE", help="write the report to FILE (default: stdout)"
    )
    _concurrency_flag(rrun)
    rrun.set_defaults(handler=cmd_runbook_run)

    modules = commands.add_parser("modules", help="the investigation modules")
    modules_cmds = modules.add_subparsers(dest="modules_command", required=True)
    modules_cmds.add_parser("list").set_defaults(handler=cmd_modules_list)
    mshow = modules_cmds.add_parser("show")
    mshow.add_argument("name")
    mshow.add_argument("--json", action="store_true")
    mshow.set_defaults(handler=cmd_modules_show)

    keys = commands.add_parser("keys", help="the investigator's OpenPGP key")
    keys_cmds = keys.add_subparsers(dest="keys_command", required=True)
    kinit = keys_cmds.add_parser("init", help="generate a signing key in GNUPGHOME")
    kinit.add_argument("--name", default="Investigator")
    kinit.add_argument("--email", default="investigator@spyglass.invalid")
    kinit.set_defaults(handler=cmd_keys_init)
    keys_cmds.add_parser(
        "export", help="print the public key for agents' investigators/"
    ).set_defaults(handler=cmd_keys_export)

    inventory = commands.add_parser("inventory", help="the fleet")
    inv_cmds = inventory.add_subparsers(dest="inventory_command", required=True)
    ilist = inv_cmds.add_parser("list", help="hosts matching a target")
    ilist.add_argument("-t", "--target", default="all")
    ilist.set_defaults(handler=cmd_inventory_list)
    icheck = inv_cmds.add_parser(
        "check",
        help="connect, verify host keys, hello, clock skew (and the agent module) per host",
        description="Exit status 0 if every host answered, 3 if some did not.",
    )
    icheck.add_argument("-t", "--target", default="all")
    _concurrency_flag(icheck)
    icheck.add_argument("--json", action="store_true", help="one JSON object per host")
    icheck.add_argument(
        "--hello-only",
        action="store_true",
        help="do not sign and run the agent module, only say hello",
    )
    icheck.set_defaults(handler=cmd_inventory_check)
    itrust = inv_cmds.add_parser(
        "trust",
        help="show a host's presented key and pin it in known_hosts once confirmed",
    )
    itrust.add_argument("host", help="host name in the inventory")
    itrust.add_argument(
        "--fingerprint",
        metavar="SHA256:...",
        help="pin only if the presented key has this fingerprint (from the host's console)",
    )
    itrust.add_argument("--yes", action="store_true", help="pin without asking")
    itrust.set_defaults(handler=cmd_inventory_trust)

    results_cli.add_commands(commands)

    lab = commands.add_parser("lab", help="a local fleet of real agents on loopback")
    lab_cmds = lab.add_subparsers(dest="lab_command", required=True)
    up = lab_cmds.add_parser("up", help="start N agents")
    up.add_argument("-n", type=int, default=20)
    up.add_argument("--dir", type=Path, required=True)
    up.add_argument(
        "--seed-files",
        type=Path,
        help="folder whose _all/ and HOSTNAME/ subfolders are copied into host roots",
    )
    up.add_argument("--per-process", type=int, default=250, help="agents per agentd process")
    up.set_defaults(handler=cmd_lab_up)
    down = lab_cmds.add_parser("down", help="stop the lab's agents")
    down.add_argument("--dir", type=Path, required=True)
    down.set_defaults(handler=cmd_lab_down)

    demo = commands.add_parser("demo", help="a lab with planted findings, then an investigation")
    demo.add_argument("--agents", type=int, default=20)
    demo.add_argument("--headless", action="store_true", help="no TUI: run the sweep and print")
    demo.add_argument("--dir", type=Path, default=Path("demo-lab"))
    demo.set_defaults(handler=cmd_demo)
    return parser


def _concurrency_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--concurrency",
        type=int,
        default=512,
        help="hosts in flight at once (SSH handshakes are paced separately; default 512)",
    )


def _launch_flags(parser: argparse.ArgumentParser, *, target_required: bool) -> None:
    parser.add_argument(
        "-t",
        "--target",
        required=target_required,
        help='target selector, e.g. "env=prod and role in (web, db)"',
    )
    _concurrency_flag(parser)
    parser.add_argument(
        "--workers",
        type=parse_workers,
        default=1,
        metavar="N",
        help="console processes to spread the hosts over: a number, or auto (one per core)",
    )
    parser.add_argument("--json", action="store_true", help="JSON lines on stdout")
    parser.add_argument(
        "--show",
        choices=("found", "notfound", "all"),
        default="found",
        help="which answering hosts the final table lists",
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in (None, "tui"):
        return _tui(args)
    try:
        return int(args.handler(args))
    except SpyglassError as err:
        print(f"spyglass: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _tui(args: argparse.Namespace) -> int:
    # The front end is chosen here, at the very top; importing it lazily keeps textual out of
    # every headless command.
    from importlib import import_module

    try:
        app_module = import_module("tui.app")
    except ModuleNotFoundError:
        print("spyglass: the TUI is not installed in this build", file=sys.stderr)
        return 2
    return int(app_module.run_app(args))


# -- helpers shared by the commands ------------------------------------------------------------
def open_inventory(args: argparse.Namespace) -> Inventory:
    if not args.inventory:
        raise UsageError("no inventory: pass --inventory FILE or set SPYGLASS_INVENTORY")
    return load_inventory(args.inventory)


def open_store(args: argparse.Namespace) -> Store:
    return Store(args.store or default_store_path())


def signer(args: argparse.Namespace) -> Signer:
    return Signer(
        os.environ.get("GNUPGHOME"), key=args.key, passphrase=os.environ.get("SPYGLASS_PASSPHRASE")
    )


def launch(args: argparse.Namespace, envelope: Envelope, target: str) -> int:
    """Fan an envelope out to the hosts ``target`` selects; print and store as events arrive."""
    inventory = open_inventory(args)
    hosts = inventory.select(target)
    if not hosts:
        raise UsageError(f"target {target!r} matches no host of {inventory.path}")
    store = open_store(args)
    output = JsonLines() if args.json else TextOutput(args.show)
    if isinstance(output, TextOutput):
        output.start(len(hosts))

    async def go() -> Summary:
        pool = Pool(Connector(inventory))
        investigation = Investigation(envelope, hosts, pool, store, args.concurrency)
        if args.workers > 1:
            investigation.dispatcher = ShardedDispatcher(
                pool, args.workers, concurrency=args.concurrency
            )
        try:
            return await investigation.run(output)
        finally:
            await pool.close()

    try:
        summary = run_async(go())
    finally:
        store.close()
    output.summary(summary)
    return summary.exit_status()


# -- commands ----------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    module = get_module(args.module)
    assert module is not None
    action = compose(
        args.module, module.params_from_cli(args), args.target, args.expire, args.action_name
    )
    envelope = signer(args).sign(Envelope(action))
    if args.sign_only:
        envelope.save(args.sign_only)
        print(
            f"wrote {args.sign_only} (action {action.id}); another approver can "
            f"`spyglass action sign {args.sign_only}`",
            file=sys.stderr,
        )
        return 0
    return launch(args, envelope, args.target)


def cmd_action_sign(args: argparse.Namespace) -> int:
    envelope = signer(args).sign(load_envelope(args.file))
    envelope.save(args.file)
    print(f"{args.file}: now {len(envelope.signatures)} signature(s)", file=sys.stderr)
    return 0


def cmd_action_launch(args: argparse.Namespace) -> int:
    envelope = load_envelope(args.file)
    return launch(args, envelope, args.target or envelope.action.target)


def cmd_action_show(args: argparse.Namespace) -> int:
    from console.approvals import inspect_envelope, read_agent_policy

    envelope = load_envelope(args.file)
    agent = read_agent_policy(args.config) if args.config else None
    infos, verdict = inspect_envelope(envelope, os.environ.get("GNUPGHOME"), agent)
    action = envelope.action
    if args.json:
        doc: dict[str, Any] = {
            "action": action.to_dict(),
            "signatures": [
                {
                    "fingerprint": i.fingerprint,
                    "uid": i.uid,
                    "status": i.status,
                    "seen_by": i.seen_by,
                }
                for i in infos
            ],
        }
        if verdict is not None:
            doc["agent"] = {
                "config": str(verdict.agent.path),
                "name": verdict.agent.name,
                "accepted": verdict.accepted,
                "reason": verdict.reason,
                "detail": verdict.detail,
                "modules": [
                    {
                        "module": m.module,
                        "rule": m.rule,
                        "weight": m.weight,
                        "minimum_weight": m.needed,
                        "signers": m.signers,
                    }
                    for m in verdict.modules
                ],
            }
        print(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        _print_action(envelope, infos)
        if verdict is not None:
            _print_verdict(verdict)
    if verdict is None:
        return 0
    return 0 if verdict.accepted else 1


def _print_action(envelope: Envelope, infos: list[Any]) -> None:
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
    for info in infos:
        who = info.fingerprint or "unknown key"
        uid = f" {printable(info.uid)}" if info.uid else ""
        print(f"  {info.index + 1}. {who}{uid}: {info.status} ({info.seen_by})")


def _print_verdict(verdict: Any) -> None:
    print(f"agent {printable(verdict.agent.name)} ({verdict.agent.path}):")
    for m in verdict.modules:
        signers = ", ".join(s[-16:] for s in m.signers) or "no signer it counts"
        mark = "ok" if m.ok else "NOT ENOUGH"
        print(
            f"  {m.module}: {m.rule} needs weight {m.needed}, signers weigh {m.weight} "
            f"({signers}): {mark}"
        )
    if verdict.accepted:
        print("  verdict: would be accepted")
    else:
        print(f"  verdict: would be rejected: {verdict.reason}: {printable(verdict.detail)}")


def cmd_runbook_check(args: argparse.Namespace) -> int:
    from console.runbook import load_runbook

    book = load_runbook(args.file)
    inventory = open_inventory(args) if args.inventory else None
    for step in book.steps:
        notes = []
        if step.only_hosts_matched_by:
            notes.append(f"only hosts matched by {step.only_hosts_matched_by!r}")
        if step.stop_if:
            notes.append("stop if " + " or ".join(step.stop_if))
        if inventory is not None:
            count = len(inventory.select(step.target))
            notes.append(f"{count} host(s) in {inventory.path.name}")
            if not count:
                print(
                    f"{args.file.name}: warning: step {step.name!r}: target {step.target!r} "
                    "matches no host",
                    file=sys.stderr,
                )
        extra = f" ({'; '.join(notes)})" if notes else ""
        print(
            f"{step.index + 1}. {printable(step.name)}: {step.module} on "
            f"{printable(step.target)}, expires after {step.expire} s{extra}"
        )
    print(f"{args.file}: {len(book.steps)} step(s) OK", file=sys.stderr)
    return 0


def cmd_runbook_run(args: argparse.Namespace) -> int:
    from console.runbook import RunbookReport, load_runbook, render, run_runbook

    book = load_runbook(args.file)
    inventory = open_inventory(args)
    sign_with = signer(args)
    store = open_store(args)

    async def go() -> RunbookReport:
        pool = Pool(Connector(inventory))
        try:
            return await run_runbook(
                book, inventory, pool, store, sign_with, concurrency=args.concurrency
            )
        finally:
            await pool.close()

    try:
        report = run_async(go())
    finally:
        store.close()
    text = render(report, as_json=args.json)
    if args.report:
        args.report.write_text(text, encoding="utf-8")
        print(f"report written to {args.report}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    status = report.exit_status()
    if status == 2:
        print("spyglass: no step of the runbook was launched", file=sys.stderr)
    return status


def cmd_modules_list(args: argparse.Namespace) -> int:
    for module in all_modules():
        print(f"{module.name:<10} {module.summary}")
    return 0


def cmd_modules_show(args: argparse.Namespace) -> int:
    module = get_module(args.name)
    if module is None:
        raise UsageError(f"unknown module {args.name!r}; see `spyglass modules list`")
    print(json.dumps(module.spec(), indent=2) if args.json else module.describe())
    return 0


def cmd_keys_init(args: argparse.Namespace) -> int:
    home = os.environ.get("GNUPGHOME") or str(Path.home() / ".gnupg")
    fingerprint = generate_key(
        home, args.name, args.email, passphrase=os.environ.get("SPYGLASS_PASSPHRASE")
    )
    print(fingerprint)
    return 0


def cmd_keys_export(args: argparse.Namespace) -> int:
    print(signer(args).export_public(), end="")
    return 0


def cmd_inventory_list(args: argparse.Namespace) -> int:
    inventory = open_inventory(args)
    for host in inventory.select(args.target):
        tags = " ".join(f"{k}={v}" for k, v in sorted(host.tags.items()) if k != "name")
        print(f"{printable(host.name)}\t{host.address}:{host.port}\t{printable(tags)}")
    return 0


def cmd_inventory_check(args: argparse.Namespace) -> int:
    from console.fleet import (
        SKEW_WARNING_MS,
        HostHealth,
        check_exit_status,
        check_fleet,
        format_skew,
    )

    inventory = open_inventory(args)
    hosts = inventory.select(args.target)
    if not hosts:
        raise UsageError(f"target {args.target!r} matches no host of {inventory.path}")
    sign_with = None
    if not args.hello_only:
        try:
            sign_with = signer(args)
        except SpyglassError as err:
            print(f"spyglass: hello only (no agent module): {err}", file=sys.stderr)

    def show(h: HostHealth) -> None:
        if args.json:
            print(json.dumps(h.to_json(), ensure_ascii=False), flush=True)
            return
        if not h.ok:
            print(f"{printable(h.host)}\t{h.address}\t{h.status}\t{printable(h.detail)}")
            return
        skew = format_skew(h.skew_ms)
        if h.skew_ms is not None and abs(h.skew_ms) > SKEW_WARNING_MS:
            skew += " (CLOCK OFF)"
        info = h.info or {}
        facts = [
            f"version {printable(h.version)}",
            f"skew {skew}",
            f"modules {printable(','.join(h.modules))}",
        ]
        if info:
            facts.append(f"{printable(info.get('hostname'))} {printable(info.get('os'))}")
            facts.append(f"up {printable(info.get('uptime'))}s")
        if h.action and h.action != "matched":
            facts.append(f"agent module: {printable(h.action)}")
        print(f"{printable(h.host)}\t{h.address}\tok\t" + "; ".join(facts))

    results = run_async(
        check_fleet(inventory, hosts, signer=sign_with, concurrency=args.concurrency, on_host=show)
    )
    failed = [r for r in results if not r.ok]
    print(
        f"{len(results)} hosts: {len(results) - len(failed)} ok, {len(failed)} failed",
        file=sys.stderr,
    )
    return check_exit_status(results)


def cmd_inventory_trust(args: argparse.Namespace) -> int:
    from console.fleet import fetch_host_key, pin

    inventory = open_inventory(args)
    known_hosts = inventory.defaults.known_hosts
    if known_hosts is None:
        raise UsageError(f"{inventory.path}: [defaults] sets no known_hosts file to pin keys in")
    host = inventory.by_name(args.host)
    presented = run_async(fetch_host_key(inventory, host))
    fingerprint = presented.fingerprint
    print(
        f"{host.name} ({host.address}:{host.port}) presents {presented.key.get_algorithm()} "
        f"{fingerprint}"
    )
    if presented.already_trusted:
        print(f"{host.name}: already pinned in {known_hosts}")
        return 0
    if presented.pinned:
        print(
            f"WARNING: {known_hosts} pins another key for {host.name} "
            f"({', '.join(presented.pinned)}): the host was re-keyed or someone is in the way",
            file=sys.stderr,
        )
    if args.fingerprint is not None:
        if args.fingerprint.strip() != fingerprint:
            raise UsageError(
                f"{host.name} presented {fingerprint}, not {args.fingerprint.strip()}; "
                f"{known_hosts} unchanged"
            )
    elif not args.yes:
        if not sys.stdin.isatty():
            raise UsageError("not confirmed: pass --fingerprint SHA256:... or --yes")
        answer = input(f"pin this key for {host.name} in {known_hosts}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("not pinned", file=sys.stderr)
            return 1
    pin(known_hosts, presented)
    print(f"{host.name}: pinned {fingerprint} in {known_hosts}")
    return 0


def cmd_lab_up(args: argparse.Namespace) -> int:
    lab = lab_up(args.dir, args.n, seed_files=args.seed_files, per_process=args.per_process)
    print(
        f"{args.n} agents listening; use:\n"
        f"  export SPYGLASS_INVENTORY={lab.inventory} GNUPGHOME={lab.gnupghome}"
    )
    return 0


def cmd_lab_down(args: argparse.Namespace) -> int:
    print(f"stopped {lab_down(args.dir)} agent process(es)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from console.demo import run_demo

    return run_demo(args, launch)


def _json_default(value: Any) -> str:
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
