"""Reading an OpenAPI document (a mapping, or a JSON or YAML file on the host), bounded, and its local $refs.

A document may come from anyone (a vendor's spec, a file a model downloaded), so it is read as
hostile input: the file's size, the nesting depth and the number of values are capped *while*
reading (a YAML alias fan-out, the "billion laughs", is counted value by value, and a YAML
alias that contains itself is caught by the depth cap), only JSON values are kept (YAML dates
become strings, integer keys such as response codes become strings), and a ``$ref`` must be a
local JSON pointer (``#/components/...``): nothing is fetched. Following a chain of ``$ref``
is bounded and a cycle is an error. Every problem is an :class:`~kernel_agent.errors.OpenApiError`
naming the JSON pointer where it is.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
import stat
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kernel_agent.errors import OpenApiError

MAX_DOCUMENT_BYTES = 32 * 1024 * 1024
MAX_VALUES = 2_000_000  # every value read counts, a YAML alias as often as it is used
MAX_DEPTH = 100
MAX_REF_CHAIN = 32
SUPPORTED_VERSIONS = ("3.0.", "3.1.")


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def clean_text(text: str) -> str:
    """A document's text (a summary, a description) without control characters or bidirectional overrides.

    It reaches the model's prompt, docstrings and terminals (``kernel-agent sdk``): an escape
    sequence in a description must not drive a terminal, nor an override reorder what is read.
    """
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def escape(token: str) -> str:
    """One JSON pointer token (``/`` -> ``~1``, ``~`` -> ``~0``)."""
    if "~" not in token and "/" not in token:
        return token
    return token.replace("~", "~0").replace("/", "~1")


def pointer(*tokens: str | int) -> str:
    """A JSON pointer from its tokens."""
    return "".join("/" + escape(str(token)) for token in tokens)


def load_document(document: Mapping[str, Any] | str | os.PathLike[str]) -> tuple[dict[str, Any], str]:
    """The document as plain JSON values, checked and bounded, and a label for messages."""
    if isinstance(document, Mapping):
        return _checked(document), "(mapping)"
    if isinstance(document, str) and document.startswith(("http://", "https://")):
        raise OpenApiError("an OpenAPI document is read from a file or a mapping, never fetched from a URL: "
                           "download it and pass the file")
    if not isinstance(document, (str, os.PathLike)):
        raise OpenApiError(f"expected a mapping or a file path, got {type(document).__name__}")
    path = Path(document)
    try:
        # Non-blocking, then checked to be a regular file: a FIFO or a device planted where a document was
        # expected must not hang the host or feed it without end.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            status = os.fstat(descriptor)
            if not stat.S_ISREG(status.st_mode):
                raise OpenApiError(f"{path.name} is not a regular file")
            if status.st_size > MAX_DOCUMENT_BYTES:
                raise OpenApiError(f"{path.name} is {status.st_size} bytes, over the {MAX_DOCUMENT_BYTES} byte limit")
            with os.fdopen(os.dup(descriptor), "rb") as file:
                raw = file.read(MAX_DOCUMENT_BYTES + 1)
        finally:
            os.close(descriptor)
    except OSError as exc:
        raise OpenApiError(f"cannot read the OpenAPI document {str(path)!r}: {exc.strerror or exc}") from None
    if len(raw) > MAX_DOCUMENT_BYTES:  # it grew while read (or is not a regular file)
        raise OpenApiError(f"{path.name} is over the {MAX_DOCUMENT_BYTES} byte limit")
    yaml_suffix = path.suffix.lower() in (".yaml", ".yml")
    parsed = _parse_yaml(raw, path.name) if yaml_suffix else _parse_json_or_yaml(raw, path.name)
    if not isinstance(parsed, Mapping):
        raise OpenApiError(f"{path.name} does not hold an object (a mapping) at the top")
    return _checked(parsed), path.name


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_json_or_yaml(raw: bytes, label: str) -> Any:
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise OpenApiError(f"{label} is nested too deeply") from None
    except ValueError as exc:
        if raw.lstrip()[:1] in (b"{", b"["):  # it meant to be JSON
            raise OpenApiError(f"{label} is not valid JSON: {exc}") from None
        return _parse_yaml(raw, label)


def _parse_yaml(raw: bytes, label: str) -> Any:
    try:
        import yaml
    except ImportError:
        raise OpenApiError(f"{label} is YAML, and reading YAML needs PyYAML, which is not installed: "
                           "pip install PyYAML (or pass the document as JSON or as a mapping)") from None
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # safe: plain values only, no Python objects
    try:
        return yaml.load(raw, Loader=loader)
    except RecursionError:
        raise OpenApiError(f"{label} is nested too deeply") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise OpenApiError(f"{label} is not valid YAML{line}: {getattr(exc, 'problem', None) or 'parse error'}") \
            from None


def _checked(document: Mapping[Any, Any]) -> dict[str, Any]:
    """A copy holding JSON values only, built iteratively with the value and depth caps."""
    count = 0
    root: dict[str, Any] = {}
    # (source, destination, depth, pointer) for each container still to copy
    stack: list[tuple[Any, Any, int, str]] = [(document, root, 0, "")]
    while stack:
        source, target, depth, where = stack.pop()
        if depth >= MAX_DEPTH:
            raise OpenApiError(f"nested deeper than {MAX_DEPTH} levels", pointer=where)
        is_mapping = isinstance(source, Mapping)
        count += len(source)
        if count > MAX_VALUES:
            raise OpenApiError(f"more than {MAX_VALUES} values (counting every use of a YAML alias): "
                               "too large to use")
        for key, value in source.items() if is_mapping else enumerate(source):
            if is_mapping and type(key) is not str:
                if isinstance(key, bool) or not isinstance(key, int):
                    raise OpenApiError(f"a key of type {type(key).__name__} (keys must be strings)", pointer=where)
                key = str(key)
            if type(value) in _PLAIN:
                copied = value
            else:
                copied = _leaf(value, f"{where}/{escape(str(key))}")
                if copied is _CONTAINER:
                    copied = {} if isinstance(value, Mapping) else []
                    stack.append((value, copied, depth + 1, f"{where}/{escape(str(key))}"))
            if is_mapping:
                target[key] = copied
            else:
                target.append(copied)
    return root


_PLAIN = frozenset({str, int, bool, type(None)})


_CONTAINER = object()


def _leaf(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise OpenApiError("a number that is not finite (NaN or infinity)", pointer=where)
        return value
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, (Mapping, list, tuple)):
        return _CONTAINER
    raise OpenApiError(f"a value of type {type(value).__name__} (only JSON values are allowed)", pointer=where)


class Document:
    """A checked document and its local JSON pointers."""

    def __init__(self, data: dict[str, Any], label: str) -> None:
        self.data = data
        self.label = label
        version = data.get("openapi")
        if "swagger" in data and version is None:
            raise OpenApiError("Swagger 2.0 documents are not supported: convert the document to OpenAPI 3 "
                               "(for example with swagger2openapi)", pointer="/swagger")
        if not isinstance(version, str) or not version.startswith(SUPPORTED_VERSIONS):
            raise OpenApiError(f"unsupported OpenAPI version {version!r}: 3.0.x and 3.1.x are supported",
                               pointer="/openapi")
        self.version = version
        self._resolved: dict[str, tuple[Any, str]] = {}  # $ref -> (target, pointer): a document is not changed
        if not isinstance(data.get("paths"), dict):
            raise OpenApiError("the document has no paths object", pointer="/paths")

    def resolve(self, ref: Any, where: str) -> tuple[Any, str]:
        """What a ``$ref`` points at, and its pointer; only ``#/...`` references within this document."""
        if not isinstance(ref, str):
            raise OpenApiError("$ref must be a string", pointer=where)
        found = self._resolved.get(ref)
        if found is None:
            found = self._resolved[ref] = self._resolve(ref, where)
        return found

    def _resolve(self, ref: str, where: str) -> tuple[Any, str]:
        if not ref.startswith("#"):
            raise OpenApiError(f"$ref {ref[:200]!r} is not local: only references within the document "
                               "(#/...) are followed, nothing is fetched", pointer=where)
        fragment = urllib.parse.unquote(ref[1:]) if "%" in ref else ref[1:]
        if fragment and not fragment.startswith("/"):
            raise OpenApiError(f"$ref {ref[:200]!r} is not a JSON pointer", pointer=where)
        node: Any = self.data
        tokens = fragment.split("/")[1:] if fragment else []
        for token in tokens:
            token = token.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and token in node:
                node = node[token]
            elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
                node = node[int(token)]
            else:
                raise OpenApiError(f"$ref {ref[:200]!r} points at nothing", pointer=where)
        return node, pointer(*(t.replace("~1", "/").replace("~0", "~") for t in tokens))

    def deref(self, node: Any, where: str) -> tuple[Any, str]:
        """``node``, or what its chain of ``$ref`` ends at (bounded; a cycle is an error), and its pointer."""
        seen: set[str] = set()
        while isinstance(node, dict) and "$ref" in node:
            if len(seen) >= MAX_REF_CHAIN:
                raise OpenApiError(f"a chain of more than {MAX_REF_CHAIN} $refs", pointer=where)
            node, target = self.resolve(node["$ref"], where)
            if target in seen:
                raise OpenApiError(f"$ref cycle through {target}", pointer=where)
            seen.add(target)
            where = target
        return node, where
