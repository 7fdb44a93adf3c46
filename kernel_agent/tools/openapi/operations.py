"""The operations of an OpenAPI document as plans: a tool's name, schema and docs, and how to make its request.

One :class:`OperationPlan` per operation (``paths`` x HTTP method). Its input schema has one
property per parameter (path, query, header and cookie parameters, under their own names;
a name used in two places gets the place as a suffix, ``id_query``) plus the request body:
a JSON or form body whose schema is a plain object with properties none of which clashes
with a parameter is flattened (its properties become parameters), any other body is one
``body`` parameter. Whether a property is a parameter or a body field, and under which wire
name, is kept in the plan, never taken from the call.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from kernel_agent.errors import OpenApiError
from kernel_agent.tools.openapi.document import Document, clean_text, escape, pointer
from kernel_agent.tools.openapi.schemas import SchemaConverter

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
READ_ONLY_METHODS = frozenset({"get", "head", "options"})
_LOCATIONS = ("path", "query", "header", "cookie")
# Set by the HTTP layer, never by a parameter (as the OpenAPI specification says for the first three).
_IGNORED_HEADERS = frozenset({"accept", "content-type", "authorization", "content-length", "host", "cookie",
                              "transfer-encoding", "connection"})
MAX_NAME = 256
MAX_DESCRIPTION = 8_000


@dataclass(frozen=True)
class ParameterPlan:
    """Where one input property goes in the request."""

    key: str  # the property of the tool's input schema
    name: str  # its name on the wire
    location: str  # path, query, header or cookie
    style: str
    explode: bool
    as_json: bool  # a parameter described by `content` (its value is sent as JSON text)


@dataclass(frozen=True)
class BodyPlan:
    """How the request body is made from the input properties."""

    media_type: str
    kind: str  # json, form, multipart or raw
    keys: tuple[str, ...]  # flattened: these properties are the body's fields
    key: str | None  # not flattened: this property is the whole body


@dataclass(frozen=True)
class OperationPlan:
    """One operation: the tool it becomes and the request it makes."""

    method: str
    path: str
    pointer: str
    name: str
    namespace: str | None
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None
    parameters: tuple[ParameterPlan, ...]
    body: BodyPlan | None
    security: tuple[tuple[str, ...], ...] | None  # alternatives of scheme names; None: the document's


def iter_operations(document: Document) -> Iterator[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """(path, method, path item, operation) for every operation, in document order."""
    for path, item in document.data["paths"].items():
        where = pointer("paths", path)
        if not path.startswith("/"):
            raise OpenApiError("a path must start with '/'", pointer=where)
        item, _ = document.deref(item, where)
        if not isinstance(item, dict):
            raise OpenApiError("a path item must be an object", pointer=where)
        for method in METHODS:
            if method in item:
                operation = item[method]
                if not isinstance(operation, dict):
                    raise OpenApiError("an operation must be an object", pointer=pointer("paths", path, method))
                yield path, method, item, operation


def plan_operations(document: Document, converter: SchemaConverter, namespace: str | None,
                    default_namespace: str) -> list[OperationPlan]:
    """Every operation of the document as a plan; duplicate operationIds are an error."""
    operations = list(iter_operations(document))
    ids: dict[str, str] = {}
    for path, method, _, operation in operations:
        operation_id = operation.get("operationId")
        if operation_id is None:
            continue
        where = pointer("paths", path, method, "operationId")
        if not isinstance(operation_id, str) or not operation_id.strip() or len(operation_id) > MAX_NAME:
            raise OpenApiError(f"operationId must be a non-empty string of at most {MAX_NAME} characters",
                               pointer=where)
        if operation_id in ids:
            raise OpenApiError(f"operationId {operation_id!r} is used twice (also at {ids[operation_id]})",
                               pointer=where)
        ids[operation_id] = where
    plans = []
    for path, method, item, operation in operations:
        name = operation.get("operationId")
        if name is None:
            name = f"{method} {path}"[:MAX_NAME]
            while name in ids:
                name += "_"
            ids[name] = ""
        # Names reach terminals and recordings as they are: no control characters or bidirectional overrides.
        plans.append(_plan(document, converter, path, method, item, operation, clean_text(name) or name, namespace,
                           default_namespace))
    return plans


def _plan(document: Document, converter: SchemaConverter, path: str, method: str, item: dict[str, Any],
          operation: dict[str, Any], name: str, namespace: str | None, default_namespace: str) -> OperationPlan:
    where = pointer("paths", path, method)
    properties: dict[str, Any] = {}
    required: list[str] = []
    refs: set[str] = set()
    parameters: list[ParameterPlan] = []
    for raw, raw_where in _parameters(document, item, operation, path, method):
        parameter, parameter_where = document.deref(raw, raw_where)
        plan, schema, is_required = _parameter(converter, parameter, parameter_where, properties, refs)
        if plan is None:
            continue
        properties[plan.key] = schema
        if is_required:
            required.append(plan.key)
        parameters.append(plan)
    _check_path_parameters(path, parameters, where)
    body = _body(document, converter, operation, where, properties, required, refs)
    # In document order: a recording keeps it (kernel_agent.tools.key_order), so a replay makes the same SDK.
    input_schema: dict[str, Any] = {"type": "object", "properties": properties,
                                    "additionalProperties": False}
    if required:
        input_schema["required"] = required
    output_schema = _output(document, converter, operation, where, refs)
    definitions, _ = converter.closure(refs, where)
    if definitions:
        input_schema["$defs"] = definitions
        if output_schema is not None:
            output_schema = {**output_schema, "$defs": definitions}
    security = operation.get("security")
    tags = operation.get("tags")
    first_tag = tags[0] if isinstance(tags, list) and tags and isinstance(tags[0], str) and tags[0].strip() else None
    return OperationPlan(
        method=method, path=path, pointer=where, name=name,
        namespace=namespace if namespace is not None else (clean_text(first_tag or "") or default_namespace),
        description=_description(operation, item, method, path),
        input_schema=input_schema, output_schema=output_schema, parameters=tuple(parameters), body=body,
        security=security_requirements(security, f"{where}/security") if security is not None else None,
    )


def _parameters(document: Document, item: dict[str, Any], operation: dict[str, Any], path: str,
                method: str) -> list[tuple[Any, str]]:
    """The path item's parameters overridden by the operation's (same name and location), with pointers."""
    chosen: dict[tuple[str, str], tuple[Any, str]] = {}
    for owner, tokens in ((item, ("paths", path)), (operation, ("paths", path, method))):
        listed = owner.get("parameters", [])
        if not isinstance(listed, list):
            raise OpenApiError("parameters must be a list", pointer=pointer(*tokens, "parameters"))
        for index, raw in enumerate(listed):
            raw_where = pointer(*tokens, "parameters", index)
            parameter, _ = document.deref(raw, raw_where)
            if not isinstance(parameter, dict) or not isinstance(parameter.get("name"), str) \
                    or parameter.get("in") not in _LOCATIONS:
                raise OpenApiError("a parameter needs a name and an 'in' of path, query, header or cookie",
                                   pointer=raw_where)
            chosen[(parameter["name"], parameter["in"])] = (raw, raw_where)
    return list(chosen.values())


def _parameter(converter: SchemaConverter, parameter: dict[str, Any], where: str, taken: dict[str, Any],
               refs: set[str]) -> tuple[ParameterPlan | None, dict[str, Any], bool]:
    name, location = parameter["name"], parameter["in"]
    if not name or len(name) > MAX_NAME:
        raise OpenApiError(f"a parameter name must have 1 to {MAX_NAME} characters", pointer=where)
    if location == "header" and name.lower() in _IGNORED_HEADERS:
        return None, {}, False
    as_json = False
    if "schema" in parameter:
        raw_schema, schema_where = parameter["schema"], f"{where}/schema"
    elif isinstance(parameter.get("content"), dict) and parameter["content"]:
        media, entry = next(iter(parameter["content"].items()))
        raw_schema = entry.get("schema", {}) if isinstance(entry, dict) else {}
        schema_where = f"{where}/content/{escape(str(media))}/schema"
        as_json = True
    else:
        raw_schema, schema_where = {}, where
    converted = converter.convert(raw_schema, schema_where)
    refs |= converted.refs
    schema = dict(converted.schema)
    if isinstance(parameter.get("description"), str) and "description" not in schema:
        schema["description"] = clean_text(parameter["description"])
    key = name
    if key in taken:
        key = f"{name}_{location}"
        while key in taken:
            key += "_"
    default_style = {"query": "form", "cookie": "form"}.get(location, "simple")
    style = parameter["style"] if isinstance(parameter.get("style"), str) else default_style
    explode = parameter["explode"] if isinstance(parameter.get("explode"), bool) else style == "form"
    is_required = location == "path" or parameter.get("required") is True
    plan = ParameterPlan(key=key, name=name, location=location, style=style, explode=explode, as_json=as_json)
    return plan, schema, is_required


def _check_path_parameters(path: str, parameters: list[ParameterPlan], where: str) -> None:
    declared = {p.name for p in parameters if p.location == "path"}
    for segment in path.split("{")[1:]:
        name = segment.split("}", 1)[0]
        if "}" not in segment or name not in declared:
            raise OpenApiError(f"the path's {{{name}}} is not declared as a path parameter", pointer=where)


def _body(document: Document, converter: SchemaConverter, operation: dict[str, Any], where: str,
          properties: dict[str, Any], required: list[str], refs: set[str]) -> BodyPlan | None:
    if "requestBody" not in operation:
        return None
    body, body_where = document.deref(operation["requestBody"], f"{where}/requestBody")
    content = body.get("content") if isinstance(body, dict) else None
    if not isinstance(content, dict) or not content:
        raise OpenApiError("a requestBody needs a content object", pointer=body_where)
    media_type, kind = _media_type(list(content))
    entry = content[media_type]
    raw_schema = entry.get("schema", {}) if isinstance(entry, dict) else {}
    converted = converter.convert(raw_schema, f"{body_where}/content/{escape(media_type)}/schema")
    refs |= converted.refs
    body_required = isinstance(body, dict) and body.get("required") is True
    target = converter.resolve_local(converted.schema)
    fields = target.get("properties")
    if kind != "raw" and isinstance(fields, dict) and fields and not (set(fields) & set(properties)) \
            and "body" not in properties and target.get("type", "object") == "object" \
            and not any(k in target for k in ("allOf", "anyOf", "oneOf", "not")) \
            and target.get("additionalProperties") in (None, False):
        properties.update(fields)
        inner = target.get("required", [])
        if body_required:
            required.extend(name for name in inner if name in fields)
        return BodyPlan(media_type=media_type, kind=kind, keys=tuple(fields), key=None)
    key = "body"
    while key in properties:
        key += "_"
    schema = dict(converted.schema)
    if isinstance(body, dict) and isinstance(body.get("description"), str) and "description" not in schema:
        schema["description"] = clean_text(body["description"])
    if kind == "raw":
        schema = {"description": f"the request body ({media_type}): str or bytes"}
    properties[key] = schema
    if body_required:
        required.append(key)
    return BodyPlan(media_type=media_type, kind=kind, keys=(), key=key)


def _media_type(types: list[str]) -> tuple[str, str]:
    """The media type used for a body, and how it is sent: JSON first, then forms, then the first one."""
    lowered = [(t, t.split(";")[0].strip().lower()) for t in types]
    for original, media in lowered:
        if media == "application/json" or media.endswith("+json"):
            return original, "json"
    for original, media in lowered:
        if media == "application/x-www-form-urlencoded":
            return original, "form"
    for original, media in lowered:
        if media == "multipart/form-data":
            return original, "multipart"
    return types[0], "raw"


def _output(document: Document, converter: SchemaConverter, operation: dict[str, Any], where: str,
            refs: set[str]) -> dict[str, Any] | None:
    responses = operation.get("responses")
    if not isinstance(responses, dict):
        return None
    for code in sorted(k for k in responses if k.startswith("2")):
        response, response_where = document.deref(responses[code], f"{where}/responses/{code}")
        content = response.get("content") if isinstance(response, dict) else None
        if not isinstance(content, dict):
            return None
        for media, entry in content.items():
            lowered = media.split(";")[0].strip().lower()
            if (lowered == "application/json" or lowered.endswith("+json")) and isinstance(entry, dict) \
                    and "schema" in entry:
                converted = converter.convert(entry["schema"], f"{response_where}/content/{escape(media)}/schema")
                refs |= converted.refs
                return converted.schema
        return None
    return None


def security_requirements(requirements: Any, where: str) -> tuple[tuple[str, ...], ...]:
    if not isinstance(requirements, list) or not all(isinstance(r, dict) for r in requirements):
        raise OpenApiError("security must be a list of objects", pointer=where)
    return tuple(tuple(str(name) for name in requirement) for requirement in requirements)


def _description(operation: dict[str, Any], item: dict[str, Any], method: str, path: str) -> str:
    parts = []
    for owner in (operation, item):
        for key in ("summary", "description"):
            text = owner.get(key)
            if isinstance(text, str) and text.strip() and text.strip() not in parts:
                parts.append(text.strip())
        if parts:
            break
    if operation.get("deprecated") is True:
        parts[:1] = [f"(deprecated) {parts[0]}" if parts else "(deprecated)"]
    parts.append(f"HTTP: {method.upper()} {path}")
    text = clean_text("\n\n".join(parts))
    return text if len(text) <= MAX_DESCRIPTION else text[:MAX_DESCRIPTION - 3] + "..."
