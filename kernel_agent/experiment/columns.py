"""The columns of an experiment's results table: the contract between the runner (which fills them) and the
summary, plots and command line (which read them). Kept apart from results.py, which imports the readers.
"""

from __future__ import annotations

#: column -> what it holds (the table's columns, in this order)
COLUMNS: dict[str, str] = {
    "configuration": "the configuration's name",
    "task": "the task's name",
    "repeat": "the repeat's index, from 0",
    "success": "whether the checker accepted the answer (False when the run gave none or the checker raised)",
    "answer": "the answer's repr, bounded to 2,000 characters ('' when none)",
    "checker_error": "why the checker raised ('' when it did not)",
    "stop_reason": "AgentResult.stop_reason's value (final_answer, answered, max_steps, ..., error)",
    "error": "AgentResult.error, or why the run failed before or after the agent ('' when none)",
    "steps": "model replies",
    "cells": "cells run",
    "tool_calls": "host tool calls made by the run's cells",
    "input_tokens": "Usage.input_tokens over the run",
    "output_tokens": "Usage.output_tokens",
    "cache_read_tokens": "Usage.cache_read_tokens (the provider's prompt cache)",
    "cache_write_tokens": "Usage.cache_write_tokens",
    "total_tokens": "Usage.total_tokens",
    "cost": "US dollars from the configuration's Pricing (NaN without one)",
    "seconds": "wall time of the run",
    "model_seconds": "time spent waiting for the model (0 for replies from the reply cache)",
    "model_calls": "replies the model was really asked for (0 when every reply came from the reply cache)",
    "cached_replies": "replies served by the reply cache",
    "notebook": "the run's recorded notebook, relative to the experiment's directory ('' when not recorded)",
    "started_at": "when the run started, ISO 8601 UTC",
}
