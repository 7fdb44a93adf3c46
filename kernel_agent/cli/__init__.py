"""The ``kernel-agent`` command line: parsing, terminal rendering, exit statuses."""

import sys

# Only in the command's own process (the library leaves a user's interpreter alone): jsonschema, which
# nbformat imports, imports rfc3987_syntax when installed (jupyter-server's dependencies install it),
# and that builds an Earley grammar at import: 2.5-4 s of CPU on every command, before it does anything.
# kernel-agent checks no "iri" format (kernel_agent/tools/tool.py: costly formats are not checked), so
# the package is marked absent before anything imports jsonschema.
if "jsonschema" not in sys.modules:
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]  # None: "import fails"
