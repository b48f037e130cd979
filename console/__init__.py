"""spyglass console package."""
