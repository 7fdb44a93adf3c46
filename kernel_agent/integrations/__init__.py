"""kernel-agent inside other agent frameworks: each adapter is an optional extra (``kernel-agent[NAME]``)."""
