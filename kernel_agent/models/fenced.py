"""The fallback for models that answer in plain text: code in fenced blocks.

A model that does not use the code-execution tool (a local server without
function calling, or a model that forgets) still gets its code run when it
fences it. Blocks tagged ``python``/``py``/``ipython`` are taken; untagged
blocks only when there is no tagged one (they are often shell or output).
Several blocks in one answer run as one cell, in order.
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([\w+-]*)[^\n]*\n(.*?)^[ \t]*\1[ \t]*$", re.MULTILINE | re.DOTALL)
_PYTHON_TAGS = {"python", "py", "python3", "ipython", "ipython3"}


def fenced_code(text: str) -> str | None:
    """The Python code fenced in ``text``, or None when there is none."""
    tagged: list[str] = []
    untagged: list[str] = []
    for match in _FENCE.finditer(text):
        tag, body = match.group(2).lower(), match.group(3)
        if tag in _PYTHON_TAGS:
            tagged.append(body)
        elif not tag:
            untagged.append(body)
    blocks = tagged or untagged
    code = "\n".join(block.rstrip("\n") for block in blocks).strip("\n")
    return code or None
