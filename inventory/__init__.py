"""spyglass inventory: the TOML list of hosts and the target selectors that pick among them.

Headless on purpose: it imports only ``protocol.errors``, never asyncssh or textual, so the CLI can
check an inventory or a selector without loading the SSH or TUI stacks.
"""

from __future__ import annotations

from inventory.loader import dump_inventory, load_inventory
from inventory.model import Defaults, Host, Inventory
from inventory.selector import Selector, compile_selector

__all__ = [
    "Defaults",
    "Host",
    "Inventory",
    "Selector",
    "compile_selector",
    "dump_inventory",
    "load_inventory",
]
