"""The ``kernel-agent`` command line: parsing, terminal rendering, exit statuses."""
