"""spyglass modules package."""
