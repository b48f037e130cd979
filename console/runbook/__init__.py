"""Runbooks: TOML files of signed steps, parsed, run in order and reported."""
