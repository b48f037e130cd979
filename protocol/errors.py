"""The one error tree of spyglass.

Every error a user can cause or meet is a ``SpyglassError`` whose ``str()`` is a short message a
person can act on; front ends print it on one line, never as a traceback::

    SpyglassError
    ├── UsageError              bad command line or runbook usage
    │   └── RunbookError        (console.runbook.parse) names the file, the step and the key
    ├── ConfigError             agentd.toml, lab or store problems
    ├── InventoryError          inventory file: names the file, the key and the problem
    │   └── SelectorError       target selector syntax, with the column
    ├── ActionError             an action or envelope that does not match the schema
    │   └── ParamError          a module parameter that does not validate: module, param, problem
    ├── SigningError            gpg could not sign (no key, gpg failure, ...)
    │   ├── PassphraseNeeded    the key needs a passphrase gpg has not got, or got a wrong one
    │   └── AlreadySigned       the envelope already carries this key's signature
    ├── FrameError              a wire frame that cannot be read
    │   └── FrameTooLarge       announced length over max_frame
    ├── Rejected                an agent refused an action; carries the DESIGN §2 reason
    ├── HostFailure             (console.fanout.transport) a host ended unanswered: its status
    └── ZygoteError             (agentd.runner) the module runner's zygote failed

Not in the tree, because it is no error: ``modules.context.LimitReached``, the signal that a
module reached a match cap, which ends its operation normally with status ``limit``.
"""

from __future__ import annotations

from typing import Literal

RejectReason = Literal[
    "malformed",
    "unsupported-version",
    "not-yet-valid",
    "expired",
    "bad-signature",
    "unknown-signer",
    "acl",
    "unknown-module",
    "invalid-params",
    "replayed",
    "busy",
]


class SpyglassError(Exception):
    """Root of every spyglass error; ``str(err)`` is the one-line user message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(SpyglassError):
    """The command line or a runbook asks for something that cannot be done."""


class ConfigError(SpyglassError):
    """An agent configuration, lab folder or results store is unusable."""


class InventoryError(SpyglassError):
    """The inventory file is malformed; the message names the file, the key and the problem."""


class SelectorError(InventoryError):
    """A target selector does not parse; ``column`` is 1-based."""

    def __init__(self, message: str, selector: str, column: int) -> None:
        pointer = f"\n  {selector}\n  {' ' * (column - 1)}^"
        super().__init__(f"target selector, column {column}: {message}{pointer}")
        self.selector = selector
        self.column = column


class ActionError(SpyglassError):
    """An action or envelope breaks the schema of DESIGN §2."""


class ParamError(ActionError):
    """A module parameter does not validate: ``module``, ``param`` and ``problem``, with the
    message ``MODULE: PARAM: problem`` built from them once. ``ParamError("PARAM: problem")``
    (no keywords) still reads as before."""

    def __init__(
        self, problem: str, *, param: str | None = None, module: str | None = None
    ) -> None:
        super().__init__(": ".join(part for part in (module, param, problem) if part))
        self.problem, self.param, self.module = problem, param, module

    @property
    def in_params(self) -> str:
        """The message without the module: ``PARAM: problem``."""
        return ": ".join(part for part in (self.param, self.problem) if part)

    def of(self, module: str) -> ParamError:
        """This error, said of ``module``; one that names its module already is kept as is."""
        if self.module is not None:
            return self
        return ParamError(self.problem, param=self.param, module=module)


class SigningError(SpyglassError):
    """gpg refused to sign: no secret key, wrong passphrase, agent failure."""


class PassphraseNeeded(SigningError):
    """gpg needs a passphrase for the key and has none, or a wrong one: a front end may ask."""


class AlreadySigned(SigningError):
    """The envelope already carries a signature by this key; a second one adds no weight."""


class FrameError(SpyglassError):
    """A frame on the wire is not a length-prefixed UTF-8 JSON object with a ``type``."""


class FrameTooLarge(FrameError):
    """A frame announced a length above the limit; the stream cannot be resynchronised."""


class Rejected(SpyglassError):
    """The agent refused an action at one step of the verification pipeline."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: RejectReason = reason
        self.detail = detail
