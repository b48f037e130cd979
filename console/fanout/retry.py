"""``--until-expiry``: when a host that could not be reached is tried again.

Jittered exponential backoff (5 s doubling to 5 min by default; each wait is drawn between half
and all of its step, so a fleet that comes back is not hit in lockstep), never past the action's
expiry: an agent refuses an expired action, so the last attempt leaves a second before it.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

from protocol.errors import ConfigError

#: What ``--until-expiry`` (run, action launch, resume) and a runbook step's ``until_expiry``
#: do; declared once here.
UNTIL_EXPIRY_HELP = (
    "retry hosts that are unreachable, busy, time out before accepting or lose their "
    "connection, with backoff (5 s doubling to 5 min), until the action expires"
)
#: Seconds of the first wait; tests set it low so a campaign runs in seconds.
BASE_ENV = "SPYGLASS_RETRY_BASE"
#: The longest wait between two attempts.
CAP = 300.0
#: An attempt is not started less than this many seconds before the action expires.
MARGIN = 1.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base: float = 5.0
    cap: float = CAP

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> RetryPolicy:
        raw = env.get(BASE_ENV)
        if not raw:
            return cls()
        try:
            base = float(raw)
        except ValueError:
            base = 0.0
        if not 0 < base <= CAP:
            raise ConfigError(f"{BASE_ENV}={raw!r}: expected seconds, above 0 and at most 300")
        return cls(base=base)

    def delay(self, attempt: int, expire_after: float, now: float | None = None) -> float | None:
        """Seconds to wait after failed attempt number ``attempt`` (from 1), or None when the
        action expires before another attempt could be made."""
        left = expire_after - (time.time() if now is None else now) - MARGIN
        if left <= 0:
            return None
        step = min(self.cap, self.base * 2 ** min(attempt - 1, 32))
        return min(left, step / 2 + random.uniform(0, step / 2))


def until_expiry(on: bool) -> RetryPolicy | None:
    """The retry policy of ``--until-expiry`` when it is given, else none."""
    return RetryPolicy.from_env() if on else None
