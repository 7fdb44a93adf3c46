"""Recording sessions as auditable, replayable notebooks (host side)."""
