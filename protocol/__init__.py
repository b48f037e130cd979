"""spyglass protocol package."""

#: The one place the version is written: pyproject.toml reads it, agents report it.
__version__ = "0.1.0"
