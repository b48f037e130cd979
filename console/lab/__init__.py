"""The local lab: agents on loopback with a seeded root each, for demos, tests and benchmarks."""
