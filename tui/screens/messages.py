"""Messages more than one screen posts (each screen's own are nested in its class)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message


@dataclass
class RerunRequested(Message):
    """Open compose with ``action``'s module, parameters and target; unless ``edit``, go on to
    the launch confirmation at once (a rerun: a fresh id and validity window, nothing else new)."""

    action: dict[str, Any]
    edit: bool = False
