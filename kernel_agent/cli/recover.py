"""``kernel-agent recover JOURNAL``: rebuild a session notebook from its journal (after a crash)."""

from __future__ import annotations

from pathlib import Path

import click

from kernel_agent.cli.errors import input_error


@click.command("recover", short_help="rebuild a session notebook from its journal (after a crash)")
@click.argument("journal")
@click.option("--out", metavar="NOTEBOOK", help="notebook to write (default: next to the journal)")
def command(journal: str, out: str | None) -> int:
    """Rebuild a session notebook from JOURNAL (the session's *.journal.jsonl), read as hostile input."""
    from kernel_agent.record.recorder import recover

    journal_path = Path(journal)
    notebook = Path(out) if out else journal_path.with_name(journal_path.name.replace(".journal.jsonl", ".ipynb"))
    if notebook == journal_path:
        raise ValueError(f"{journal_path} is not named *.journal.jsonl; give --out NOTEBOOK")
    try:
        count = recover(journal_path, notebook)
    except Exception as exc:  # noqa: BLE001 - a journal is hostile input: one line, never a traceback
        return input_error("recover", exc)
    print(f"recovered {count} cells from {journal_path} into {notebook}")
    return 0
