"""One operation through the agent's own path: the zygote, a confined child, the rows it sends.

For module tests that must show their module works confined as the agent runs it (with the
child's Landlock ruleset built from the signed params, e.g. ``ping``'s ports).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentd.runner import Budget, OpOutcome, Zygote, run_operation
from protocol.agent_config import LimitsSection


async def operation(
    module: str, params: dict[str, Any], root: Path, **limits: Any
) -> tuple[OpOutcome, list[dict[str, Any]]]:
    """The operation's outcome and the rows it emitted."""
    rows: list[dict[str, Any]] = []
    outcome = await run_operation(
        module,
        params,
        root=str(root),
        limits=LimitsSection(**limits),
        timeout=60,
        budget=Budget(10000, 16 << 20),
        sink=lambda kind, payload: rows.append(payload) if kind == "match" else None,
    )
    return outcome, rows


@pytest.fixture
def fresh_zygote() -> Iterator[None]:
    """A zygote started in the test (its own event loop and environment), closed after."""
    if Zygote._current is not None:
        Zygote._current.close()
    yield
    if Zygote._current is not None:
        Zygote._current.close()
