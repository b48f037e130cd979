"""Fan-out: send one envelope to many hosts (dispatcher, SSH connections, shards) and account for
every host; ``check`` probes the fleet without an action."""
