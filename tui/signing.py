"""The signing and passphrase loop: every signature the TUI makes goes through here.

gpg blocks, so it runs in a thread; when the key wants a passphrase gpg cannot ask for
(``PassphraseNeeded``), the investigator is asked in a masked prompt, at most three times, and
the session keeps the one that worked. Any other ``SigningError`` (``AlreadySigned``, no key) is
told once: asking again cannot help.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from textual.app import App

from protocol.envelope import Envelope
from protocol.errors import PassphraseNeeded, SigningError
from tui.model.session import Session
from tui.screens.prompt import Prompt

ATTEMPTS = 3


class Signing:
    """Signs for one app and session; call its coroutines from a worker (they wait on prompts)."""

    def __init__(self, app: App[Any], session: Session) -> None:
        self.app = app
        self.session = session

    async def sign(self, envelope: Envelope) -> Envelope | None:
        """``envelope`` with our signature added, or None (the investigator has been told why)."""
        passphrase: str | None = None
        for _attempt in range(ATTEMPTS):
            try:
                return await asyncio.to_thread(self.session.sign, envelope, passphrase)
            except PassphraseNeeded as err:
                passphrase = await self.app.push_screen_wait(
                    Prompt("Passphrase for your signing key", password=True, note=str(err)[:200])
                )
                if not passphrase:
                    return None
            except SigningError as err:
                self.app.notify(str(err), severity="error", title="Not signed")
                return None
        self.app.notify("signing failed three times", severity="error", title="Not signed")
        return None

    def save_as(self, envelope: Envelope) -> None:
        """Sign only: ask where to save, then sign ``envelope`` and write it there, for a second
        approver to add theirs."""

        def chosen(path: str | None) -> None:
            if path:
                self.app.run_worker(
                    self._save_as(envelope, Path(path)),
                    group="sign",
                    exclusive=True,
                    exit_on_error=False,
                )

        self.app.push_screen(
            Prompt(
                "Save the signed envelope to",
                f"action-{envelope.action.id}.json",
                note="another approver adds a signature in Approvals (f5) or with "
                "`spyglass action sign FILE`",
            ),
            chosen,
        )

    async def _save_as(self, envelope: Envelope, path: Path) -> None:
        signed = await self.sign_and_save(envelope, path)
        if signed is not None:
            n = len(signed.signatures)
            self.app.notify(f"wrote {path} with {n} signature(s)", title="Signed")

    async def sign_and_save(self, envelope: Envelope, path: Path) -> Envelope | None:
        """Add our signature and write the envelope to ``path``; None (the investigator has been
        told why) if either fails."""
        signed = await self.sign(envelope)
        if signed is None:
            return None
        try:
            signed.save(path)
        except OSError as err:
            self.app.notify(f"{path}: {err.strerror}", severity="error", title="Not saved")
            return None
        return signed
