"""The skill versions a recorded session loaded, read from its notebook: name -> sha256 (and the skills its SDK
listed, for a resume).

Each first ``from skills import NAME`` of a session is a recorded
``skills.load`` call whose result names the version (sha256) it served. The
notebook is read by the hardened reader (hostile input: sizes, depth, types);
an entry that is not a well-formed load result is skipped, never trusted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kernel_agent.kernel.catalog_search import CatalogEntry, extra_entries, read_catalog
from kernel_agent.protocol import wire
from kernel_agent.protocol.names import METADATA_KEY
from kernel_agent.record.format import SIDE_FILE_KEY
from kernel_agent.record.reader import read_notebook, read_side_file
from kernel_agent.skills.checks import check_name
from kernel_agent.skills.versions import is_sha256

LOAD_TOOL = "skills.load"


def pins_from_notebook(notebook: Path) -> dict[str, str]:
    """The versions the session recorded in ``notebook`` loaded (the first load of each name wins)."""
    pins: dict[str, str] = {}
    for cell in read_notebook(notebook).get("cells", []):
        ours = cell.get("metadata", {}).get(METADATA_KEY, {}) if isinstance(cell, dict) else {}
        calls = ours.get("tool_calls", []) if isinstance(ours, dict) else []
        for call in calls if isinstance(calls, list) else []:
            if not (isinstance(call, dict) and call.get("tool") == LOAD_TOOL and call.get("status") == "ok"):
                continue
            result = _value(notebook, call.get("result"))
            name, sha256 = (result.get("name"), result.get("sha256")) if isinstance(result, dict) else (None, None)
            if isinstance(name, str) and is_sha256(sha256) and _is_name(name):
                pins.setdefault(name, str(sha256))
    return pins


def recorded_catalog(notebook: Path, namespace: str = "skills") -> list[CatalogEntry] | None:
    """The skills the recorded session's SDK listed (its ``skills`` module's catalogue extras), None when it
    has no such module: a source serving these regenerates the recorded SDK, so a resume accepts it."""
    header = read_notebook(notebook).get("metadata", {}).get(METADATA_KEY, {}).get("session", {})
    tools = header.get("tools") if isinstance(header, dict) else None
    modules = tools.get("sdk_modules") if isinstance(tools, dict) else None
    source = modules.get(namespace) if isinstance(modules, dict) else None
    catalog = read_catalog(source) if isinstance(source, str) else None
    return extra_entries(namespace, catalog) if catalog is not None else None


def _value(notebook: Path, value: Any) -> Any:
    """A recorded value, decoded (read from its side file when it was kept in one); None when it does not decode."""
    digest = value.get(SIDE_FILE_KEY) if isinstance(value, dict) else None
    if isinstance(digest, str) and is_sha256(digest):
        value = read_side_file(notebook, digest)
    try:
        return wire.decode(value, [])
    except wire.DecodeError:
        return None


def _is_name(name: str) -> bool:
    try:
        check_name(name)
    except ValueError:
        return False
    return True
