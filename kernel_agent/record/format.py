"""The recorded-notebook format: where things live, and the integrity chain.

A recorded session is an nbformat 4.5 notebook. Everything kernel-agent adds
is under the metadata key ``kernel_agent``.

Notebook ``metadata.kernel_agent``::

    format            1
    session           the immutable header (the chain's genesis): session_id,
                      started_at, versions, sandbox (mode, policy, loosenings,
                      limits_enforced_by), workspace, tools ({"manifest",
                      "sdk_hash", "sdk_modules" (the generated SDK source),
                      "definitions": [{qualified_name, name, namespace,
                      description, input_schema, output_schema, read_only,
                      destructive, source, namespace_description (when
                      its source gave the namespace one), key_order (the
                      schemas' property maps and shown values whose keys are
                      not sorted, as {"input_schema": [[path, keys]],
                      "output_schema": ...}:
                      the order this file's sorted keys lose and the SDK
                      needs, kernel_agent.tools.key_order)}]}), seed ({"value": the int
                      the kernel's random and NumPy generators were seeded
                      with, "generators"}), and what the caller adds
                      (record_metadata: model, task, ...)
    end               written when the session closes, after its kernel was
                      stopped: {"ended_at", "reason", "cells" (= length),
                      "head" (= Hn), "totals", "settings" (limits, timeouts,
                      budgets, policy), "record" (where it was written and
                      whether a sandbox could reach it)}; the chain covers it
                      through the seal
    chain             {"algorithm": "sha256", "genesis": H0, "head": Hn,
                       "length": n, "seal": S | absent, "hmac": hex | null,
                       "signature": {"algorithm": "ed25519", "public_key",
                       "value"} | absent}

Cell ``metadata.kernel_agent`` (every cell kernel-agent writes has one)::

    seq               0, 1, 2, ... the cell's position in the chain
    kind              "setup" | "task" | "message" | "note" | "code", or a
                      session event ("resumed", "detached", "attached",
                      "background"); cell 0 is the
                      setup cell: a session records it but never runs it;
                      Jupyter tools (nbclient, nbval, papermill) run it, and it
                      makes the kernel serve the recorded tool results
                      (kernel_agent.kernel.replay)
    hash              H[seq]
    code cells also:  status, start_time, end_time, duration, tool_calls
                      (ToolCall records; large arguments/results moved to
                      side files), progress, final_answer (wire encoding),
                      kernel_restarted, state_lost, dropped_output_bytes,
                      and when an agent drove the cell: step, call_id,
                      code_via, observation {"text", "truncated", "images"},
                      usage
    messages also:    step, and the tool calls the model sent malformed
                      (malformed: [[call_id, raw]]), so a resume can rebuild
                      the conversation (kernel_agent.agent.resume)

The chain: ``H0 = sha256(canonical(session header))``,
``H[i] = sha256(H[i-1] + canonical(hashable_cell(cell i)))``; the head is
the last hash. The seal ``S = sha256(Hn + canonical(end))`` chains the end
record after the last cell, so dropping trailing cells, or replacing the
notebook or the journal after close, leaves an end that no longer fits.
``hashable_cell`` is the cell without its id and without its
own ``hash`` field, with multi-line strings joined (nbformat and JupyterLab
may store text as lists of lines). The HMAC-SHA256 (user key,
``KERNEL_AGENT_AUDIT_KEY``) and the Ed25519 signature (``kernel-agent keygen``;
``KERNEL_AGENT_SIGNING_KEY``) are computed over one statement naming the
genesis, the length, the head and the seal (:func:`chain_statement`), so
they cover the whole chain including its end; while a session runs, the
statement has no seal yet. The kernel never sees host variables or keys. Canonical JSON: sorted keys,
no spaces, UTF-8, no NaN.

Large values (tool arguments and results, final answers) above
``SIDE_FILE_THRESHOLD`` bytes of JSON go to ``<notebook stem>.files/<sha256>.json``
next to the notebook and stand in the metadata as
``{"$side_file": "<sha256>", "bytes": n}``; the cell hash covers the
reference, and audit checks each file against its name.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import math
from typing import Any

from kernel_agent.protocol.names import METADATA_KEY as METADATA_KEY  # re-exported: fmt.METADATA_KEY

FORMAT_VERSION = 1
SIDE_FILE_THRESHOLD = 64 * 1024
SIDE_FILE_KEY = "$side_file"
AUDIT_KEY_ENV = "KERNEL_AGENT_AUDIT_KEY"


def canonical_json(value: Any) -> str:
    """The one serialisation that is hashed: sorted keys, compact, UTF-8, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_hex(text: str | bytes) -> str:
    """Hex SHA-256 of text (UTF-8) or bytes."""
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def _join_lines(value: Any) -> Any:
    return "".join(value) if isinstance(value, list) and all(isinstance(v, str) for v in value) else value


def _is_json_mime(mime: str) -> bool:
    # A list of strings is a real value in JSON MIME data, never a split text.
    return mime == "application/json" or mime.endswith("+json")


def normalised_output(output: dict[str, Any]) -> dict[str, Any]:
    """An output with multi-line strings joined (stream text, textual MIME data) and transient data dropped."""
    result = dict(output)
    if "text" in result:
        result["text"] = _join_lines(result["text"])
    if isinstance(result.get("data"), dict):
        result["data"] = {mime: v if _is_json_mime(mime) else _join_lines(v) for mime, v in result["data"].items()}
    result.pop("transient", None)
    return result


def hashable_cell(cell: dict[str, Any]) -> dict[str, Any]:
    """The part of a notebook cell the chain covers.

    Its type, source, outputs, execution count, our metadata (without its
    own hash) and its tags; not its id nor the rest of the cell metadata,
    which editors change on their own (JupyterLab's collapsed, scrolled,
    trusted, ...), so opening and saving a notebook keeps it verifiable.
    """
    full = dict(cell.get("metadata") or {})
    ours = copy.deepcopy(dict(full.get(METADATA_KEY) or {}))
    ours.pop("hash", None)
    metadata: dict[str, Any] = {METADATA_KEY: ours}
    if full.get("tags"):
        metadata["tags"] = list(full["tags"])
    content: dict[str, Any] = {
        "cell_type": cell.get("cell_type"),
        "source": _join_lines(cell.get("source", "")),
        "metadata": metadata,
    }
    if cell.get("cell_type") == "code":
        content["outputs"] = [normalised_output(o) for o in cell.get("outputs") or []]
        content["execution_count"] = cell.get("execution_count")
    return content


def cell_hash(previous: str, cell: dict[str, Any]) -> str:
    """``sha256(previous + canonical(hashable_cell(cell)))``."""
    return sha256_hex(previous + canonical_json(hashable_cell(cell)))


def genesis_hash(session_header: dict[str, Any]) -> str:
    """The hash the chain starts from: the session header's canonical form."""
    return sha256_hex(canonical_json(session_header))


def seal_hash(head: str, end: dict[str, Any]) -> str:
    """``sha256(head + canonical(end))``: the end record chained after the last cell."""
    return sha256_hex(head + canonical_json(end))


def chain_statement(genesis: str, length: int, head: str, seal: str | None) -> str:
    """What the HMAC and the signature cover: the whole chain, and its end once sealed."""
    return f"kernel-agent-chain/1 genesis={genesis} length={length} head={head} seal={seal or '-'}"


def hmac_statement(statement: str, key: bytes) -> str:
    """HMAC-SHA256 of a chain statement, hex."""
    return hmac.new(key, statement.encode(), hashlib.sha256).hexdigest()


#: How deep a recorded value may nest below its cell. The strict reader (kernel_agent.protocol.strict_json) refuses
#: documents nested over 256 levels, and a cell sits a few levels down in a notebook or a journal line:
#: a deeper value would make the whole record unreadable, so it is cut here instead.
MAX_RECORD_DEPTH = 200
#: Integers longer than this many bits (about 1,000 decimal digits, the reader's limit) are recorded as text.
MAX_RECORD_INT_BITS = 3300


#: How deep a recorded value may nest below its cell. The strict reader (kernel_agent.protocol.strict_json) refuses
#: documents nested over 256 levels, and a cell sits a few levels down in a notebook or a journal line:
#: a deeper value would make the whole record unreadable, so it is cut here instead.
MAX_RECORD_DEPTH = 200
#: Integers longer than this many bits (about 1,000 decimal digits, the reader's limit) are recorded as text.
MAX_RECORD_INT_BITS = 3300


def json_safe(value: Any, path: str = "", problems: list[str] | None = None) -> Any:
    """``value`` as the strict reader will read it back, each replacement named in ``problems``.

    Non-finite floats become the strings ``"NaN"``, ``"Infinity"``,
    ``"-Infinity"``; integers over about 1,000 digits a description; strings
    with unpaired surrogates their UTF-8-safe form; containers nested deeper
    than :data:`MAX_RECORD_DEPTH` a marker; keys that are not strings their
    ``str``; other objects their ``repr``. So a cell the kernel filled with
    such values is kept (with what could be kept) rather than lost, and the
    record stays auditable.
    """
    problems = problems if problems is not None else []
    noted = _Problems()
    safe = _safe(value, (None, path), noted, 0)
    problems += noted.named
    if noted.more:
        problems.append(f"... and {noted.more:,} more values replaced the same ways")
    return safe


class _Problems:
    """The replacements made, the first few by name (a cell of a million NaNs must not make a million messages)."""

    LIMIT = 20

    def __init__(self) -> None:
        self.named: list[str] = []
        self.more = 0

    def add(self, path: Any, what: str) -> None:
        if len(self.named) >= self.LIMIT:
            self.more += 1
            return
        where = _render(path)
        self.named.append(f"{where if len(where) <= 120 else where[:117] + '...'}: {what}")


# A path into a value, built only as a chain of (parent, part) pairs and rendered only when a problem is named.
_Path = tuple[Any, str]


def _render(path: _Path) -> str:
    parts: list[str] = []
    node: Any = path
    while node is not None:
        node, part = node
        if part:
            parts.append(part)
    return ".".join(reversed(parts)).replace(".[", "[") or "value"


def _safe(value: Any, path: _Path, problems: _Problems, depth: int) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            problems.add(path, "a string with an unpaired surrogate; recorded with it replaced")
            return value.encode("utf-8", "replace").decode("utf-8")
        return value
    if isinstance(value, int):
        if value.bit_length() > MAX_RECORD_INT_BITS:
            digits = int(value.bit_length() * 0.30103) + 1
            problems.add(path, f"an integer of about {digits:,} digits; recorded as a description")
            return f"<integer of about {digits:,} digits, not recorded>"
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        text = "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
        problems.add(path, f"{text} is not valid JSON; recorded as the string {text!r}")
        return text
    if isinstance(value, (list, tuple, dict)) and depth >= MAX_RECORD_DEPTH:
        problems.add(path, f"nested deeper than {MAX_RECORD_DEPTH} levels; not recorded")
        return f"<nested deeper than {MAX_RECORD_DEPTH} levels, not recorded>"
    if isinstance(value, (list, tuple)):
        return [_safe(item, (path, f"[{index}]"), problems, depth + 1) for index, item in enumerate(value)]
    if isinstance(value, dict):
        result: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                problems.add(path, f"key {key!r} is not a string; recorded as {str(key)!r}")
            name = _safe(str(key), path, problems, depth)
            result[name] = _safe(item, (path, name), problems, depth + 1)
        return result
    problems.add(path, f"a {type(value).__name__} is not JSON; recorded as its repr")
    return repr(value)


def side_file_reference(value_json: str) -> tuple[dict[str, Any], str]:
    """(the reference that stands in the notebook, the side file's name) for a large JSON value."""
    digest = sha256_hex(value_json)
    return {SIDE_FILE_KEY: digest, "bytes": len(value_json.encode())}, f"{digest}.json"
