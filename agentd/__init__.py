"""spyglass agentd package."""
