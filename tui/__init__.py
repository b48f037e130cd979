"""spyglass tui package."""
