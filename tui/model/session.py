"""The TUI session: inventory, results store, signer settings and one connection pool.

Plain glue over ``console/`` so that screens stay about presentation. One ``Pool`` lives for the
whole session, so a second investigation reuses the connections of the first.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from console.fanout.ssh import Connector, Pool
from console.results.store import Store, default_store_path
from inventory.loader import load_inventory
from inventory.model import Host, Inventory
from protocol.envelope import Envelope
from protocol.errors import SpyglassError, UsageError
from protocol.signing import Signer


class Session:
    def __init__(
        self,
        inventory_path: str | None,
        store_path: str | Path | None = None,
        key: str | None = None,
        gnupghome: str | None = None,
    ) -> None:
        self.inventory_path = inventory_path
        self.inventory: Inventory | None = None
        self.inventory_error: str | None = None
        if inventory_path:
            try:
                self.inventory = load_inventory(inventory_path)
            except SpyglassError as err:
                self.inventory_error = str(err)
        else:
            self.inventory_error = "no inventory: pass --inventory FILE or set SPYGLASS_INVENTORY"
        self.store_path = Path(store_path) if store_path else default_store_path()
        self._store: Store | None = None
        self.key = key
        self.gnupghome = gnupghome or os.environ.get("GNUPGHOME")
        self.passphrase: str | None = os.environ.get("SPYGLASS_PASSPHRASE")
        self._pool: Pool | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Session:
        return cls(
            getattr(args, "inventory", None),
            getattr(args, "store", None),
            getattr(args, "key", None),
        )

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.store_path)
        return self._store

    @property
    def hosts(self) -> list[Host]:
        return list(self.inventory.hosts) if self.inventory else []

    def require_inventory(self) -> Inventory:
        """The inventory; a UsageError saying why there is none."""
        if self.inventory is None:
            raise UsageError(self.inventory_error or "no inventory")
        return self.inventory

    def select(self, target: str) -> list[Host]:
        """Hosts for a selector; SelectorError (with its column) if it does not parse."""
        return self.require_inventory().select(target)

    def pool(self) -> Pool:
        if self._pool is None:
            self._pool = Pool(Connector(self.require_inventory()))
        return self._pool

    def sign(self, envelope: Envelope, passphrase: str | None = None) -> Envelope:
        """Blocking (spawns gpg): call it from a thread worker."""
        signer = Signer(self.gnupghome, key=self.key, passphrase=passphrase or self.passphrase)
        signed = signer.sign(envelope)
        if passphrase:
            self.passphrase = passphrase
        return signed

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self._store is not None:
            self._store.close()
            self._store = None
