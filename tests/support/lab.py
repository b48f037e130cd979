"""What the session's lab (conftest ``lab``) holds: its size, and where the planted file is."""

from __future__ import annotations

#: Hosts (0-based lab indexes) whose root holds the planted file of the end-to-end tests.
PLANTED = (1, 3)
PLANTED_NAME = "planted-ioc.bin"
LAB_SIZE = 6
