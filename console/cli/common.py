"""What the ``spyglass`` command groups share: opening the inventory, store and key, the launch
flags, and ``launch`` (check, fan an envelope out, print and store as events arrive).

Building the parser must stay cheap (``spyglass --help`` imports this): the fan-out, SSH, gpg and
the store are imported by the functions that use them, never at the top of a command module.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from console.fanout import DEFAULT_CONCURRENCY
from console.fanout.retry import UNTIL_EXPIRY_HELP
from protocol.errors import UsageError

if TYPE_CHECKING:
    from console.results.records import Event, Summary
    from console.results.store import Store
    from inventory.model import Host, Inventory
    from protocol.envelope import Envelope
    from protocol.signing import Signer


def open_inventory(args: argparse.Namespace) -> Inventory:
    from inventory.loader import load_inventory

    if not args.inventory:
        raise UsageError("no inventory: pass --inventory FILE or set SPYGLASS_INVENTORY")
    return load_inventory(args.inventory)


def open_store(args: argparse.Namespace) -> Store:
    from console.results.store import Store, default_store_path

    return Store(args.store or default_store_path())


def signer(args: argparse.Namespace) -> Signer:
    from protocol.signing import Signer

    return Signer(
        os.environ.get("GNUPGHOME"), key=args.key, passphrase=os.environ.get("SPYGLASS_PASSPHRASE")
    )


def _workers(text: str) -> int:
    from console.fanout.shard import parse_workers

    return parse_workers(text)


def command_group(commands: Any, name: str, help: str) -> Any:
    """A command ``name`` of ``commands`` whose own subcommands the returned action adds."""
    group = commands.add_parser(name, help=help)
    return group.add_subparsers(dest=f"{name}_command", required=True)


def command(
    commands: Any, name: str, handler: Callable[[argparse.Namespace], int], **kwargs: Any
) -> argparse.ArgumentParser:
    """A subcommand ``name`` of ``commands`` (a subparsers action) that runs ``handler``."""
    parser: argparse.ArgumentParser = commands.add_parser(name, **kwargs)
    parser.set_defaults(handler=handler)
    return parser


def json_flag(parser: argparse.ArgumentParser | Any, help: str | None = None) -> None:
    """``--json``: what it prints (``help``) differs by command; the flag is declared here."""
    parser.add_argument("--json", action="store_true", help=help)


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
        type=_workers,
        default=1,
        metavar="N",
        help="console processes to spread the hosts over: a number, or auto (one per core)",
    )
    json_flag(parser, "JSON lines on stdout")
    parser.add_argument("--until-expiry", action="store_true", help=UNTIL_EXPIRY_HELP)
    parser.add_argument(
        "--show",
        choices=("found", "notfound", "all"),
        default="found",
        help="which answering hosts the final table lists",
    )


def select_hosts(inventory: Inventory, target: str) -> list[Host]:
    """The hosts ``target`` selects; a selector that selects none says why (an unknown tag
    names the known ones)."""
    from inventory.selector import compile_selector

    hosts = inventory.select(target)
    if hosts:
        return hosts
    known = sorted({tag for host in inventory.hosts for tag in host.tags} | {"name", "address"})
    unknown = sorted(compile_selector(target).keys() - set(known))
    if unknown:
        raise UsageError(
            f"target {target!r}: no host of {inventory.path} has the tag {unknown[0]!r}; "
            f"known tags: {', '.join(known)}"
        )
    raise UsageError(f"target {target!r} matches no host of {inventory.path}")


def check_before_sending(envelope: Envelope) -> None:
    """Refuse what every agent would reject, with the agents' own checks: the validity window
    and lifetime (with the agents' default policy) and each operation's parameters."""
    from modules.registry import get_module
    from protocol.errors import ParamError, Rejected
    from protocol.verify import Policy, check_time

    action = envelope.action
    try:
        check_time(action, int(time.time()), Policy())
    except Rejected as err:
        raise UsageError(
            f"not sent: every agent would reject it ({err.reason}): {err.detail}"
        ) from None
    for op in action.operations:
        module = get_module(op.module)
        if module is None:
            raise UsageError(f"not sent: unknown module {op.module!r}")
        try:
            module.validate(op.params)
        except ParamError as err:
            raise UsageError(f"not sent: {err}") from None


#: What a launch imports to connect (asyncssh and cryptography, most of a run's start-up).
FAN_OUT_MODULES = ("console.fanout.ssh", "console.fanout.ssh_transport", "console.fanout.shard")


@contextlib.contextmanager
def fan_out_preloaded() -> Iterator[None]:
    """Import the fan-out in a thread while this one waits for gpg to sign (a process of its
    own): the first connection opens that much sooner (``bench/startup.py``). The thread is
    joined on the way out, whatever happened: an interpreter that exits while a thread is
    still loading cryptography's native module aborts."""
    import importlib
    import threading

    def load() -> None:
        for name in FAN_OUT_MODULES:
            importlib.import_module(name)

    loading = threading.Thread(target=load, name="preload")
    loading.start()
    try:
        yield
    finally:
        loading.join()


def launch(args: argparse.Namespace, envelope: Envelope, target: str) -> int:
    """Fan an envelope out to the hosts ``target`` selects; print and store as events arrive."""
    check_before_sending(envelope)
    inventory = open_inventory(args)
    return fan_out(args, inventory, envelope, select_hosts(inventory, target), open_store(args))


def fan_out(
    args: argparse.Namespace,
    inventory: Inventory,
    envelope: Envelope,
    hosts: list[Host],
    store: Store,
    resume: str | None = None,
) -> int:
    """Run ``envelope`` on ``hosts`` as a new run of ``store`` (or continuing run ``resume``),
    printing as events arrive; returns the exit status.

    Ctrl-C (SIGINT) cancels the hosts still in flight (their agents get ``cancel``) and stops
    retrying, stores each as ``cancelled`` and ends the run with its summary; the exit status is
    then 130.
    """
    from console.fanout.dispatch import Dispatcher, FanOut
    from console.fanout.investigation import Investigation
    from console.fanout.loop import run_async
    from console.fanout.retry import until_expiry
    from console.fanout.shard import ShardedDispatcher
    from console.fanout.ssh import Connector, Pool
    from console.fanout.ssh_transport import SshTransport
    from console.results.output import JsonLines, TextOutput

    retry = until_expiry(args.until_expiry)
    output = JsonLines() if args.json else TextOutput(args.show)
    if isinstance(output, TextOutput):
        output.start(len(hosts))
    else:
        output.begin(envelope.to_dict())
    ended: list[str] = []  # "interrupted" (SIGINT) or "pipe" (stdout closed)

    async def go() -> Summary:
        import asyncio

        pool = Pool(Connector(inventory))
        dispatcher: FanOut = (
            ShardedDispatcher(inventory, args.workers, concurrency=args.concurrency, retry=retry)
            if args.workers > 1
            else Dispatcher(SshTransport(pool), concurrency=args.concurrency, retry=retry)
        )
        investigation = Investigation(envelope, hosts, dispatcher, store, resume=resume)
        loop = asyncio.get_running_loop()

        def stop(why: str) -> None:
            """Cancel the hosts in flight; the run still ends with every host and a summary."""
            if not ended:
                ended.append(why)
                investigation.cancel()

        def interrupt() -> None:
            print("\nspyglass: interrupted: cancelling the hosts in flight", file=sys.stderr)
            loop.remove_signal_handler(signal.SIGINT)  # a second Ctrl-C stops at once
            stop("interrupted")

        def show(event: Event) -> None:
            if "pipe" in ended:
                return
            try:
                output(event)
            except BrokenPipeError:  # `| head`: nobody reads on, stop the run and store it
                stop("pipe")
                ended[:] = ["pipe"]

        loop.add_signal_handler(signal.SIGINT, interrupt)
        try:
            return await investigation.run(show)
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            await pool.close()

    try:
        summary = run_async(go())
    finally:
        store.close()
    if "pipe" in ended:
        raise BrokenPipeError  # the command line ends quietly with the shell's status
    output.summary(summary)
    return 130 if ended else summary.exit_status()
