"""Actions before they fly: composing one from flags, collecting approvals (signatures)."""
