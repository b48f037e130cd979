"""spyglass inventory package."""
