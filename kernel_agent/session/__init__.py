"""Sessions: one sandboxed kernel running cells, its recording, resume and restore, the synchronous wrapper."""
