"""``kernel-agent audit NOTEBOOK``: verify a recorded notebook and print the report.

Exit status: 0 intact, 1 tampered or incomplete, 2 unusable input (one line
on stderr, and with ``--json`` an ``unusable`` report on stdout). The
verification is :func:`kernel_agent.verify.audit.audit_notebook`; this
module renders its report and never lets a closed pipe change the status.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from kernel_agent.cli.errors import EXIT_UNUSABLE_INPUT, one_line, silence_stdout
from kernel_agent.cli.terminal_text import terminal_safe
from kernel_agent.verify.audit import AuditInputError, AuditReport, UnusableReport, audit_notebook, read_key


@click.command("audit", short_help="verify a recorded notebook's integrity chain and summarise the session",
               help="Verify a recorded notebook (never modified) and summarise its session. Exit status: "
                    "0 intact, 1 tampered or incomplete, 2 unusable input.")
@click.argument("notebook", metavar="NOTEBOOK")
@click.option("--json", "json_output", is_flag=True, help="print the report as one JSON document")
@click.option("--key-env", metavar="VAR", help="check the chain's HMAC with the key in this environment variable "
                                               "(default: KERNEL_AGENT_AUDIT_KEY, if set)")
@click.option("--key-file", metavar="PATH", help="check the chain's HMAC with the key in this file")
@click.option("--public-key", metavar="PATH",
              help="check the chain's Ed25519 signature with this public key (PEM, or 64 hex digits)")
def command(notebook: str, json_output: bool, key_env: str | None, key_file: str | None,
            public_key: str | None) -> int:
    if key_env is not None and key_file is not None:
        raise click.UsageError("--key-env and --key-file are exclusive: give one key")
    return main(notebook, json_output=json_output, key_env=key_env, key_file=key_file, public_key_file=public_key)


def main(notebook: str, *, json_output: bool = False, key_env: str | None = None, key_file: str | None = None,
         public_key_file: str | None = None) -> int:
    """Audit ``notebook``, print the report, return the exit status (0 intact, 1 problems, 2 unusable).

    The input is adversarial by nature, so no exception escapes as a
    traceback: anything unexpected is reported as unusable input in one line.
    """
    from kernel_agent.record import signing

    path = Path(notebook)
    try:
        key = read_key(key_env, key_file)
        public = signing.load_public_key(public_key_file) if public_key_file else None
        report = audit_notebook(path, key, public)
    except AuditInputError as exc:
        return _unusable(path, str(exc), json_output)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        return _unusable(path, f"cannot audit {path}: {type(exc).__name__}: {exc}", json_output)
    try:
        # The text report quotes the notebook (its task, messages): cleaned for the auditor's terminal.
        print(report.model_dump_json(indent=2) if json_output else terminal_safe(render_text(report)), flush=True)
    except BrokenPipeError:
        # `audit NB | head` closed the pipe: the verdict is already known, and a closed pipe must
        # never turn "intact" into a status that means "tampered".
        silence_stdout()
    return report.exit_code


def _unusable(path: Path, message: str, json_output: bool) -> int:
    message = one_line(terminal_safe(message))
    try:
        if json_output:
            print(UnusableReport(notebook=str(path), error=message).model_dump_json(indent=2), flush=True)
    except BrokenPipeError:
        silence_stdout()
    print(f"kernel-agent audit: error: {message}", file=sys.stderr)
    return EXIT_UNUSABLE_INPUT


# -- the text report ---------------------------------------------------------------------------


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count} {word if count == 1 else plural or word + 's'}"


def _preview(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else value
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_text(report: AuditReport) -> str:
    """The human report: the verdict line first, then the session, then every problem and note."""
    s = report.summary
    rows: list[tuple[str, str]] = [("notebook", report.notebook)]
    ended = f"{s.ended_at} ({s.end_reason or 'no reason'})" if s.ended_at else "(not sealed)"
    rows.append(("session", f"{s.session_id or '-'}, started {s.started_at or '-'}, ended {ended}"
                            f", wall {_seconds(s.wall_seconds)}"))
    rows.append(("record", "REACHABLE from the sandbox: " + s.record_reachable_from_sandbox
                 if s.record_reachable_from_sandbox else "out of the sandbox's reach"))
    if s.settings:
        rows.append(("settings", _preview(s.settings, 300)))
    if s.model is not None:
        rows.append(("model", _preview(s.model)))
    sandbox = f"{s.sandbox_mode or '-'} ({'confined' if s.confined else 'NOT confined'})"
    sandbox += "; loosenings: " + ("; ".join(s.loosenings) if s.loosenings else "none")
    if s.limits_not_enforced:
        sandbox += "; limits not enforced: " + "; ".join(s.limits_not_enforced)
    rows.append(("sandbox", sandbox))
    rows.append(("task", _preview(s.task) if s.task is not None else "-"))
    rows.append(("steps", f"{_plural(s.steps, 'code cell')}, {_plural(s.messages, 'message')}; "
                          f"{_plural(s.errors, 'error')}, {_plural(s.timeouts, 'timeout')}, "
                          f"{_plural(s.kernel_deaths, 'kernel death')}, "
                          f"{_plural(s.kernel_restarts, 'kernel restart')}, "
                          f"{_plural(s.state_losses, 'state loss', 'state losses')}"))
    rows.append(("time", f"{_seconds(s.seconds_in_cells)} in cells"))
    for gap in s.gaps:
        by = f"{gap.detached_by.get('user', '?')}@{gap.detached_by.get('host', '?')}"
        again = (f"attached {gap.attached_at} by {gap.attached_by.get('user', '?')}@"
                 f"{gap.attached_by.get('host', '?')} ({_seconds(gap.gap_seconds)} later)"
                 if gap.attached_at else "not attached again")
        rows.append(("detached", f"kernel {gap.kernel_id or '?'} at {gap.detached_at or '?'} by {by}; {again}"))
    tools = []
    for name, usage in s.tools.items():
        parts = [f"{count} {status}" for status, count in usage.statuses.items()]
        tools.append(f"{name} ({', '.join(parts)}{', DESTRUCTIVE' if usage.destructive else ''})")
    rows.append(("tool calls", f"{s.tool_calls}" + (": " + "; ".join(tools) if tools else "")))
    if s.destructive_tools:
        rows.append(("destructive", ", ".join(s.destructive_tools) + " (defined as destructive)"))
    rows.append(("tokens", ", ".join(f"{k} {v:g}" for k, v in s.tokens.items()) or "-"))
    rows.append(("final answer", _preview(s.final_answer) if s.has_final_answer else "-"))
    c = report.chain
    rows.append(("chain", f"{c.chained_cells} chained cells, metadata length {c.length}, head "
                          f"{str(c.head)[:16]}…, HMAC {c.hmac.replace('_', ' ')}, "
                          f"signature {c.signature.replace('_', ' ')}"))
    width = max(len(label) for label, _ in rows) + 1
    lines = [report.headline, *(f"{label + ':':<{width}} {value}" for label, value in rows)]
    if report.problems:
        lines.append("problems:")
        lines += [f"  - {p.severity.upper()}: {p.message}" for p in report.problems]
    if report.notes:
        lines.append("notes:")
        lines += [f"  - {p.message}" for p in report.notes]
    return "\n".join(lines)
