"""The system prompt: what the kernel is, the rules of working in it, and the tool manifest.

The manifest lists namespaces, names and one-line summaries only: full
schemas would cost tokens on every step, and the model can ask the kernel
for them (``help(tools.x)``, ``tools.search("words")``) when it needs them.
"""

from __future__ import annotations

import json
import platform
from typing import Any

from kernel_agent.agent.background import background_rule
from kernel_agent.models.base import tool_channel_sentence

_RULES = """\
You solve the user's task by writing Python that runs in a persistent, sandboxed IPython kernel \
(Python {python}). {channel} and you get \
back what it printed, the value of its last expression, and any error.

Rules:
- State persists: variables, imports, functions and files stay from one cell to the next. Build on \
earlier cells; do not recompute or re-fetch what you already have.
- Print only what you need to see. Keep large data in variables and look at it through summaries \
(len, a few rows, aggregates). What comes back to you is cut to about {limit:,} characters (the start \
and the end are kept).
- Tools are a Python SDK already imported as `tools`: call `tools.<name>(...)` or \
`tools.<namespace>.<name>(...)` like functions; they return Python values. `help(tools.<name>)` shows a \
tool's parameters and result; `tools.search("words")` finds tools. For many independent calls use \
`await asyncio.gather(*(tools.<name>.aio(...) for ...))`.
- An error comes back as a short traceback: read it and fix the code.
- On long work, report progress with `progress("what happened", done=i, total=n)`.
- When you have the answer, call `final_answer(value)` in a cell{answer_shape}. The run ends after that cell.
- The kernel has no network access. Its working directory is your workspace; files you write there stay."""

_NO_TOOLS = "No tools are available in this session."


def system_prompt(
    manifest: str, *, observation_limit: int, tool_name: str, output_schema: dict[str, Any] | None = None,
    instructions: str | None = None, background_after: float | None = None,
) -> str:
    """The system prompt for a run, with the session's tool manifest."""
    answer_shape = ""
    if output_schema is not None:
        answer_shape = (", with a value matching this JSON schema (a dict with these fields; it is validated, "
                        f"and you are told if it does not match): {json.dumps(output_schema, sort_keys=True)}")
    rules = _RULES.format(python=platform.python_version(), channel=tool_channel_sentence(tool_name),
                          limit=observation_limit, answer_shape=answer_shape)
    long_cells = background_rule(background_after)  # after the rules' last line, a rule of its own
    parts = [
        rules + ("\n" + long_cells if long_cells else ""),
        "Tools:\n" + manifest if manifest else _NO_TOOLS,
    ]
    if instructions:
        parts.append(instructions)
    return "\n\n".join(parts)
