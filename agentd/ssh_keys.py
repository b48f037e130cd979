"""The agent's SSH keys, parsed once instead of at every connection.

Given paths, asyncssh reads and parses the host key and authorized_keys again for every
connection (its per-connection ``reload_config``, in an executor thread): about a third of a
millisecond of the agent's CPU per cold action. The host key is loaded once at start. The
authorized keys are parsed again only when the file changes (its inode, size, or times), and
set on each connection before authentication, so a console key removed from the file is
refused from the next connection on, as before, without a restart or a reload.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import asyncssh


class AuthorizedKeys:
    """The consoles' keys of one authorized_keys file, re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, ...] | None = None
        self._keys: asyncssh.SSHAuthorizedKeys | None = None
        self._error = ""

    def current(self) -> asyncssh.SSHAuthorizedKeys | None:
        """The file's keys as it is now; None (no key is accepted) while it cannot be read,
        which is said once on stderr."""
        try:
            st = os.stat(self.path)
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            if stamp != self._stamp:
                self._keys, self._stamp = asyncssh.read_authorized_keys(str(self.path)), stamp
                self._error = ""
        except (OSError, ValueError) as err:  # KeyImportError is a ValueError
            self._keys, self._stamp = None, None
            if str(err) != self._error:
                self._error = str(err)
                print(f"spyglass-agentd: authorized keys: {err}", file=sys.stderr, flush=True)
        return self._keys


class KeyedServer(asyncssh.SSHServer):
    """Hands each connection the authorized keys as the file holds them when it authenticates."""

    def __init__(self, authorized: AuthorizedKeys) -> None:
        self._authorized = authorized
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn

    def begin_auth(self, username: str) -> bool:
        assert self._conn is not None
        self._conn.set_authorized_keys(self._authorized.current())  # type: ignore[arg-type]
        return True
