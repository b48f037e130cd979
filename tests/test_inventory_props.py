"""Any bytes in an inventory file end in an Inventory or an InventoryError, nothing else."""

from __future__ import annotations

import tempfile
from pathlib import Path

import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inventory import Inventory, load_inventory
from protocol.errors import InventoryError

SCALARS = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(),
    st.text(max_size=12),
    st.sampled_from(["web-[1-3]", "10.0.0.[1-3]", "web-1", "a", "keys/k", "[1-2]", "x[3-1]"]),
    st.floats(allow_nan=False),
)
KEYS = st.sampled_from(
    ["name", "address", "port", "user", "tags", "jump", "env", "known_hosts", "client_keys",
     "connect_timeout", "defaults", "hosts", "x"]
) | st.text(max_size=4)  # fmt: skip
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=12,
)
DOCUMENTS = st.fixed_dictionaries(
    {},
    optional={
        "defaults": st.dictionaries(KEYS, VALUES, max_size=4) | VALUES,
        "hosts": st.lists(st.dictionaries(KEYS, VALUES, max_size=5), max_size=4) | VALUES,
    },
)


def _loads_or_inventory_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "inventory.toml"
        path.write_bytes(data)
        try:
            inventory = load_inventory(path)
        except InventoryError as err:
            assert str(err).startswith(f"{path}: ")
            assert "\n" not in str(err)
            return
        assert isinstance(inventory, Inventory)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_arbitrary_bytes(data: bytes) -> None:
    _loads_or_inventory_error(data)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(DOCUMENTS)
def test_arbitrary_toml_documents(document: dict[str, object]) -> None:
    """Valid TOML of the wrong shape, which random bytes almost never reach."""
    _loads_or_inventory_error(tomli_w.dumps(document).encode())
