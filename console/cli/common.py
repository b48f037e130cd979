"""What the ``spyglass`` command groups share: opening the inventory, store and key, the launch
flags, and ``launch`` (fan an envelope out, print and store as events arrive).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal

from console.fanout.dispatch import DEFAULT_CONCURRENCY, Dispatcher, FanOut
from console.fanout.investigation import Investigation
from console.fanout.loop import run_async
from console.fanout.retry import UNTIL_EXPIRY_HELP, until_expiry
from console.fanout.shard import ShardedDispatcher, parse_workers
from console.fanout.ssh import Connector, Pool
from console.fanout.ssh_transport import SshTransport
from console.results.output import JsonLines, TextOutput
from console.results.records import Summary
from console.results.store import Store, default_store_path
from inventory.loader import load_inventory
from inventory.model import Host, Inventory
from protocol.envelope import Envelope
from protocol.errors import UsageError
from protocol.signing import Signer


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


def concurrency_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help="hosts in flight at once (SSH handshakes are paced separately; "
        f"default {DEFAULT_CONCURRENCY})",
    )


def launch_flags(parser: argparse.ArgumentParser, *, target_required: bool) -> None:
    parser.add_argument(
        "-t",
        "--target",
        required=target_required,
        help='target selector, e.g. "env=prod and role in (web, db)"',
    )
    concurrency_flag(parser)
    parser.add_argument(
        "--workers",
        type=parse_workers,
        default=1,
        metavar="N",
        help="console processes to spread the hosts over: a number, or auto (one per core)",
    )
    parser.add_argument("--json", action="store_true", help="JSON lines on stdout")
    parser.add_argument("--until-expiry", action="store_true", help=UNTIL_EXPIRY_HELP)
    parser.add_argument(
        "--show",
        choices=("found", "notfound", "all"),
        default="found",
        help="which answering hosts the final table lists",
    )


def launch(args: argparse.Namespace, envelope: Envelope, target: str) -> int:
    """Fan an envelope out to the hosts ``target`` selects; print and store as events arrive."""
    inventory = open_inventory(args)
    hosts = inventory.select(target)
    if not hosts:
        raise UsageError(f"target {target!r} matches no host of {inventory.path}")
    return fan_out(args, inventory, envelope, hosts, open_store(args))


def fan_out(
    args: argparse.Namespace,
    inventory: Inventory,
    envelope: Envelope,
    hosts: list[Host],
    store: Store,
    resume: str | None = None,
) -> int:
    """Run ``envelope`` on ``hosts`` as a new run of ``store`` (or continuing run ``resume``),
    printing as events arrive; returns the exit status."""
    retry = until_expiry(args.until_expiry)
    output = JsonLines() if args.json else TextOutput(args.show)
    if isinstance(output, TextOutput):
        output.start(len(hosts))

    async def go() -> Summary:
        pool = Pool(Connector(inventory))
        dispatcher: FanOut = (
            ShardedDispatcher(inventory, args.workers, concurrency=args.concurrency, retry=retry)
            if args.workers > 1
            else Dispatcher(SshTransport(pool), concurrency=args.concurrency, retry=retry)
        )
        investigation = Investigation(envelope, hosts, dispatcher, store, resume=resume)
        loop = asyncio.get_running_loop()

        def interrupt() -> None:  # Ctrl-C: stop (and stop retrying), then finish the run
            interrupted.append(True)
            investigation.cancel()

        loop.add_signal_handler(signal.SIGINT, interrupt)
        try:
            return await investigation.run(output)
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            await pool.close()

    interrupted: list[bool] = []
    try:
        summary = run_async(go())
    finally:
        store.close()
    output.summary(summary)
    return 130 if interrupted else summary.exit_status()
