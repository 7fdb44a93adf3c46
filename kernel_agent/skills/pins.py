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

from kernel_agent.errors import UnusableRecordError
from kernel_agent.kernel.catalog_search import CatalogEntry, extra_entries, read_catalog
from kernel_agent.protocol import wire
from kernel_agent.protocol.names import METADATA_KEY
from kernel_agent.record.format import SIDE_FILE_KEY
from kernel_agent.record.reader import read_notebook, read_side_file
from kernel_agent.skills.checks import check_name
from kernel_agent.skills.versions import is_sha256

LOAD_TOOL = "skills.load"


def pins_from_notebook(notebook: Path) -> dict[str, str]:
    """The versions the session recorded in ``notebook`` loaded: its sealed end's pins (``skills.pins``, written
    by :meth:`SkillsSource.record_end`) and its recorded loads (the first load of each name). They must agree:
    a notebook where they do not is refused (UnusableRecordError), never half-trusted."""
    document = read_notebook(notebook)
    from_loads: dict[str, str] = {}
    for cell in document.get("cells", []):
        ours = cell.get("metadata", {}).get(METADATA_KEY, {}) if isinstance(cell, dict) else {}
        calls = ours.get("tool_calls", []) if isinstance(ours, dict) else []
        for call in calls if isinstance(calls, list) else []:
            if not (isinstance(call, dict) and call.get("tool") == LOAD_TOOL and call.get("status") == "ok"):
                continue
            result = _value(notebook, call.get("result"))
            name, sha256 = (result.get("name"), result.get("sha256")) if isinstance(result, dict) else (None, None)
            if isinstance(name, str) and is_sha256(sha256) and _is_name(name):
                from_loads.setdefault(name, str(sha256))
    sealed = _sealed_pins(document)
    for name, sha256 in sealed.items():
        if from_loads.get(name, sha256) != sha256:
            raise UnusableRecordError(f"{notebook}: the sealed pin of skill {name!r} ({sha256[:12]}) is not the "
                                      f"version its recorded load served ({from_loads[name][:12]})")
    return {**from_loads, **sealed}


def _sealed_pins(document: dict[str, Any]) -> dict[str, str]:
    """The well-formed pins of the record's end (``end.skills.pins``); anything else there is skipped."""
    metadata = document.get("metadata")
    ours = metadata.get(METADATA_KEY) if isinstance(metadata, dict) else None
    end = ours.get("end") if isinstance(ours, dict) else None
    skills = end.get("skills") if isinstance(end, dict) else None
    pins = skills.get("pins") if isinstance(skills, dict) else None
    if not isinstance(pins, dict):
        return {}
    return {name: sha256 for name, sha256 in list(pins.items())[:10_000]
            if isinstance(name, str) and _is_name(name) and is_sha256(sha256)}


def recorded_catalog(notebook: Path, namespace: str = "skills") -> list[CatalogEntry] | None:
    """The skills the recorded session's SDK listed (its ``skills`` module's catalogue extras), None when it
    has no such module: a source serving these regenerates the recorded SDK, so a resume accepts it."""
    header: Any = read_notebook(notebook)
    for key in ("metadata", METADATA_KEY, "session"):  # each level may be anything in a crafted notebook
        header = header.get(key) if isinstance(header, dict) else None
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
