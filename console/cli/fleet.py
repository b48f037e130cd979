"""``spyglass keys``, ``inventory``, ``lab`` and ``demo``: the investigator's key, the fleet, and
local fleets of real agents."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from console.cli.common import (
    command,
    command_group,
    concurrency_flag,
    json_flag,
    open_inventory,
    select_hosts,
    signer,
)
from console.results.text import plural, printable
from protocol.errors import SpyglassError, UsageError


def add_keys(commands: Any) -> None:
    keys_cmds = command_group(commands, "keys", "the investigator's OpenPGP key")
    kinit = command(keys_cmds, "init", cmd_keys_init, help="generate a signing key in GNUPGHOME")
    kinit.add_argument("--name", default="Investigator")
    kinit.add_argument("--email", default="investigator@spyglass.invalid")
    command(
        keys_cmds, "export", cmd_keys_export, help="print the public key for agents' investigators/"
    )


def add_inventory(commands: Any) -> None:
    inv_cmds = command_group(commands, "inventory", "the fleet")
    ilist = command(inv_cmds, "list", cmd_inventory_list, help="hosts matching a target")
    ilist.add_argument("-t", "--target", default="all")
    icheck = command(
        inv_cmds,
        "check",
        cmd_inventory_check,
        help="connect, verify host keys, hello, clock skew (and the agent module) per host",
        description="Exit status 0 if every host answered, 3 if some did not.",
    )
    icheck.add_argument("-t", "--target", default="all")
    concurrency_flag(icheck)
    json_flag(icheck, "one JSON object per host")
    icheck.add_argument(
        "--hello-only",
        action="store_true",
        help="do not sign and run the agent module, only say hello",
    )
    itrust = command(
        inv_cmds,
        "trust",
        cmd_inventory_trust,
        help="show a host's presented key and pin it in known_hosts once confirmed",
    )
    itrust.add_argument("host", help="host name in the inventory")
    itrust.add_argument(
        "--fingerprint",
        metavar="SHA256:...",
        help="pin only if the presented key has this fingerprint (from the host's console)",
    )
    itrust.add_argument("--yes", action="store_true", help="pin without asking")


def add_lab(commands: Any) -> None:
    lab_cmds = command_group(commands, "lab", "a local fleet of real agents on loopback")
    up = command(lab_cmds, "up", cmd_lab_up, help="start N agents")
    up.add_argument("-n", type=int, default=20)
    up.add_argument("--dir", type=Path, required=True)
    up.add_argument(
        "--seed-files",
        type=Path,
        help="folder whose _all/ and HOSTNAME/ subfolders are copied into host roots",
    )
    up.add_argument("--per-process", type=int, default=250, help="agents per agentd process")
    down = command(lab_cmds, "down", cmd_lab_down, help="stop the lab's agents")
    down.add_argument("--dir", type=Path, required=True)


def add_demo(commands: Any) -> None:
    demo = command(
        commands, "demo", cmd_demo, help="a lab with planted findings, then an investigation"
    )
    demo.add_argument("--agents", type=int, default=20)
    demo.add_argument("--headless", action="store_true", help="no TUI: run the sweep and print")
    demo.add_argument("--dir", type=Path, default=Path("demo-lab"))


def cmd_keys_init(args: argparse.Namespace) -> int:
    from protocol.signing import generate_key

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
    for host in select_hosts(inventory, args.target):
        tags = " ".join(f"{k}={v}" for k, v in sorted(host.tags.items()) if k != "name")
        print(f"{printable(host.name)}\t{host.address}:{host.port}\t{printable(tags)}")
    return 0


def cmd_inventory_check(args: argparse.Namespace) -> int:
    from console.fanout.check import (
        SKEW_WARNING_MS,
        HostHealth,
        check_exit_status,
        check_fleet,
        format_skew,
    )
    from console.fanout.loop import run_async

    inventory = open_inventory(args)
    hosts = select_hosts(inventory, args.target)
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
        info = h.agent or {}
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
        f"{plural(len(results), 'host')}: {len(results) - len(failed)} ok, {len(failed)} failed",
        file=sys.stderr,
    )
    return check_exit_status(results)


def cmd_inventory_trust(args: argparse.Namespace) -> int:
    from console.fanout.check import fetch_host_key, pin
    from console.fanout.loop import run_async

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
    from console.lab.local import lab_up

    lab = lab_up(args.dir, args.n, seed_files=args.seed_files, per_process=args.per_process)
    print(
        f"{plural(args.n, 'agent')} listening; use:\n"
        f"  export SPYGLASS_INVENTORY={lab.inventory} GNUPGHOME={lab.gnupghome}"
    )
    return 0


def cmd_lab_down(args: argparse.Namespace) -> int:
    from console.lab.local import lab_down

    print(f"stopped {plural(lab_down(args.dir), 'agent process', 'agent processes')}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from console.cli.demo import run_demo

    return run_demo(args)
