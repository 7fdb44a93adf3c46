"""The session as its chained cells tell it: steps, errors, tool calls, tokens, time, the final answer.

Computed from the cells, never from the notebook's ``totals`` (which the
chain does not cover).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from kernel_agent.record import format as fmt
from kernel_agent.verify.audit.cells import cell_text, is_side_file_reference
from kernel_agent.verify.audit.chain import Verifier
from kernel_agent.verify.audit.report import Gap, Summary, ToolUsage

_TOOL_ERROR_STATUSES = {"error", "unserializable", "invalid", "timeout", "budget", "unknown_tool"}


def _parse_time(value: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _add_usage(tokens: dict[str, int | float], usage: Any, prefix: str = "") -> None:
    """Sum every numeric usage field (Anthropic and OpenAI name them differently; one level of nesting)."""
    if not isinstance(usage, dict):
        return
    for key, value in usage.items():
        if isinstance(value, dict) and not prefix:
            _add_usage(tokens, value, f"{key}.")
        elif _number(value) is not None:
            tokens[prefix + key] = tokens.get(prefix + key, 0) + value


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def summarise(verifier: Verifier) -> Summary:
    """The session as its cells tell it (the chained cells, in notebook order).

    Every value is type-checked on the way in: a tampered file may hold anything.
    """
    header = verifier.header or {}
    sandbox = _dict(header.get("sandbox"))
    enforced = _dict(sandbox.get("limits_enforced_by"))
    definitions = [d for d in _list(_dict(header.get("tools")).get("definitions")) if isinstance(d, dict)]
    destructive = {str(d.get("qualified_name")): d.get("destructive") is True for d in definitions}
    confined = sandbox.get("confined")
    summary = Summary(
        session_id=_str(header.get("session_id")), started_at=_str(header.get("started_at")),
        ended_at=_str(_dict(verifier.meta.get("end")).get("ended_at")), model=header.get("model"),
        end_reason=_str(_dict(verifier.meta.get("end")).get("reason")),
        settings=_dict(header.get("settings")),
        record_reachable_from_sandbox=_reachable(header),
        sandbox_mode=_str(sandbox.get("mode")), confined=confined if isinstance(confined, bool) else None,
        loosenings=[str(x) for x in _list(sandbox.get("loosenings"))],
        limits_not_enforced=[f"{k}: {v}" for k, v in enforced.items() if str(v).startswith("NOT ENFORCED")],
        destructive_tools=sorted(name for name, flag in destructive.items() if flag),
        task=_str(header.get("task")),
    )
    task_cell_seen = False
    seconds = 0.0
    for cell in sorted(verifier.genuine.values(), key=lambda c: c.index):
        ours = cell.ours or {}
        summary.cells += 1
        if cell.raw.get("cell_type") == "markdown":
            if cell.kind in ("detached", "attached"):
                _add_gap(summary, cell.kind, ours)
                continue
            if cell.kind == "task" and not task_cell_seen:
                task_cell_seen = True
                summary.task = cell_text(cell.raw.get("source"))
            elif cell.kind == "message":  # the model's messages; not the loop's notes, resumes or background answers
                summary.messages += 1
            continue
        if cell.raw.get("cell_type") != "code" or cell.kind == "setup":
            continue  # the setup cell (replay plumbing) was recorded, never run: not a step
        summary.steps += 1
        status = ours.get("status")
        summary.errors += status == "error"
        summary.timeouts += status == "timeout"
        summary.kernel_deaths += status == "kernel_died"
        summary.kernel_restarts += ours.get("kernel_restarted") is True
        summary.state_losses += ours.get("state_lost") is True
        seconds += _number(ours.get("duration")) or 0.0
        _add_usage(summary.tokens, ours.get("usage"))
        _count_tool_calls(summary, ours.get("tool_calls"), destructive)
        if "final_answer" in ours:
            answer = ours["final_answer"]
            if is_side_file_reference(answer) and answer[fmt.SIDE_FILE_KEY] in verifier.side_file_values:
                answer = verifier.side_file_values[answer[fmt.SIDE_FILE_KEY]]
            summary.has_final_answer, summary.final_answer = True, answer
    summary.tokens = dict(sorted(summary.tokens.items()))
    summary.seconds_in_cells = round(seconds, 6)
    started, ended = _parse_time(summary.started_at), _parse_time(summary.ended_at)
    if started is not None and ended is not None:
        summary.wall_seconds = round((ended - started).total_seconds(), 6)
    return summary


def _add_gap(summary: Summary, kind: str, ours: dict[str, Any]) -> None:
    """A detach opens a gap; the attach after it closes it (values type-checked: the file may hold anything)."""
    if kind == "detached":
        kernel = _dict(ours.get("kernel"))
        summary.gaps.append(Gap(kernel_id=_str(kernel.get("kernel_id")), detached_at=_str(ours.get("at")),
                                detached_by=_dict(ours.get("by"))))
    elif summary.gaps and summary.gaps[-1].attached_at is None:
        gap = summary.gaps[-1]
        gap.attached_at, gap.attached_by = _str(ours.get("at")), _dict(ours.get("by"))
        gap.gap_seconds = _number(ours.get("gap_seconds"))


def _reachable(header: dict[str, Any]) -> str | None:
    record = _dict(header.get("record"))
    if record.get("reachable_from_sandbox") is True:
        return _str(record.get("why")) or "the recording says so"
    if not record:
        return "unknown: the recording predates this check"
    return None


def _count_tool_calls(summary: Summary, calls: Any, destructive: dict[str, bool]) -> None:
    for call in calls if isinstance(calls, list) else []:
        if not isinstance(call, dict):
            continue
        name, status = str(call.get("tool")), str(call.get("status"))
        usage = summary.tools.setdefault(name, ToolUsage(destructive=destructive.get(name)))
        usage.calls += 1
        usage.statuses[status] = usage.statuses.get(status, 0) + 1
        usage.ok += status == "ok"
        usage.denied += status == "denied"
        usage.errors += status in _TOOL_ERROR_STATUSES
        summary.tool_calls += 1
