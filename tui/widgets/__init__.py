"""The project's own widgets, one per file."""
