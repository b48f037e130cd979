"""Running the console's coroutines: on uvloop when it is installed (the `fast` extra)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_async(main: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop  # optional: cheaper handshakes and frame handling at fleet scale
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
