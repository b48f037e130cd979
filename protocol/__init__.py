"""spyglass protocol package."""
