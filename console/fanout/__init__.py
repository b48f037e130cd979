"""Fan-out: send one envelope to many hosts (dispatcher, SSH connections, shards) and account for
every host; ``check`` probes the fleet without an action."""

#: Hosts in flight at once; SSH handshakes are paced separately by console.fanout.ssh. Here, not in
#: dispatch.py, so that the command line can show it without importing the fan-out.
DEFAULT_CONCURRENCY = 512
