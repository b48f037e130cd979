"""Helpers the tests share (test modules import from here, never from each other or conftest):
agent processes and raw SSH clients, the `spyglass` command, a module child process, gpg homes
and investigator keys, short temp paths, the lab's contents, a solo agent with small limits, the
faults victim, the lying agent, in-process module runs, and waiting on a condition."""
