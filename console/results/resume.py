"""Resuming a run: which hosts are sent its stored envelope again (``results resume``, the TUI).

Every host of the run without a final answer (an answer, or a refusal other than ``busy``:
``records.is_final``), and only those: what was answered never runs twice. The fan-out then
continues the same run in the store (``Investigation(..., resume=run_id)``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from console.results.records import is_final
from console.results.store import Store
from console.results.writer import Writer, writer_alive
from inventory.model import Host, Inventory
from protocol.envelope import Envelope, parse_envelope
from protocol.errors import InventoryError, UsageError


@dataclass
class Resume:
    run_id: str
    envelope: Envelope
    hosts: list[Host]
    """The hosts the envelope is sent to again."""
    unknown: list[str] = field(default_factory=list)
    """Why some hosts of the run are not sent it: no longer in the inventory."""


def plan_resume(
    store: Store, run_id: str, inventory: Inventory, target: str | None = None
) -> Resume:
    """What resuming stored run ``run_id`` sends, and to which hosts (narrowed to ``target`` if
    given); a ``UsageError`` if it cannot resume (its console still writes it, it expired, or it
    was stored without its host list)."""
    run = store.run(run_id)
    if run is None:
        raise UsageError(f"no single run matches {run_id!r}; see `spyglass results list`")
    if run["finished"] is None and writer_alive(run):
        raise UsageError(
            f"run {run['id']} is still being written by its console ({Writer.of_run(run)}): "
            f"`spyglass results follow {run['id']}` shows it"
        )
    envelope = parse_envelope(json.loads(run["envelope"]))
    if envelope.action.expire_after <= time.time():
        raise UsageError(f"run {run['id']}: its action has expired; nothing was sent")
    if run["targets"] is None:
        raise UsageError(f"run {run['id']} was stored without its host list: it cannot resume")
    final = {r.host for r in store.host_results(run["id"]) if is_final(r.status, r.reason)}
    plan = Resume(run["id"], envelope, [])
    for name in json.loads(run["targets"]):
        if name in final:
            continue
        try:
            plan.hosts.append(inventory.by_name(name))
        except InventoryError as err:
            plan.unknown.append(str(err))
    if target:
        selected = {h.name for h in inventory.select(target)}
        plan.hosts = [h for h in plan.hosts if h.name in selected]
    return plan
