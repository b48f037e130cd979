"""Helpers the tests share: agent processes and raw SSH clients, the `spyglass` command, a
module child process, gpg homes and investigator keys."""
