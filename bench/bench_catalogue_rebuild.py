"""Rebuilding a recording's 2,500 tools and generating a 2,500-tool SDK, each next to the code it replaces.

Replay, resume and restore rebuild a recording's tools from their definitions, and every session start
generates the SDK; both at catalogue scale, each measured in the same run as its baseline:

* **rebuilding 2,500 recorded tools** (``recorded_tools``, the OpenAPI catalogue of bench_openapi as a
  notebook gives it back), against the same rebuild checking every schema with jsonschema, as it did before
  recorded tools skipped the check (their calls are answered from the record, never validated);
* **the longest event-loop stall** while a session prepares that catalogue's tools (their names and SDK, now
  in a worker thread), against the same preparation on the loop, as before;
* **generating the SDK** of that catalogue, and of 2,500 tools that each have an ``Options`` object of
  their own (so the generator names classes Options, Options2, ... Options2500), against the generator
  as it was: a scan of every earlier class name per class, and docstrings escaped character by character
  (both kept below, as they were, for the baseline). The generated modules are checked to be identical.

Nothing is asserted. Run: ``python bench/bench_catalogue_rebuild.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _benchlib import Row, bench_main, make_row, median
from bench_key_order import stored_definitions
from bench_openapi import OPERATIONS

from kernel_agent.session.toolbox import SessionTools
from kernel_agent.tools import sdkgen
from kernel_agent.tools.key_order import with_recorded_order
from kernel_agent.tools.recorded import RecordedTools, recorded_tools
from kernel_agent.tools.registry import ToolRegistry, class_identifier
from kernel_agent.tools.tool import Tool, tool_from_schema

BENCHMARK = "catalogue_rebuild"


# -- the code this replaces, as it was (for the same-run baselines) ----------------------------------------


def checked_rebuild(definitions: list[dict[str, Any]]) -> list[Tool]:
    """recorded_tools before: each definition through tool_from_schema with jsonschema's check of its schema."""
    server = RecordedTools()
    tools = []
    for definition in definitions:
        definition = with_recorded_order(definition)
        qualified = str(definition.get("qualified_name"))
        tools.append(tool_from_schema(
            {"name": definition.get("name"), "description": definition.get("description") or "",
             "input_schema": definition.get("input_schema"), "output_schema": definition.get("output_schema")},
            server.handler(qualified), namespace=definition.get("namespace"), takes_mapping=True))
    return tools


def old_docstring(text: str, indent: str = "") -> str:
    out = []
    for index, char in enumerate(text):
        following = text[index + 1] if index + 1 < len(text) else ""
        if char == "\\":
            out.append("\\\\")
        elif char == '"' and following in ('"', ""):
            out.append('\\"')
        elif char in "\n\t" or (char.isprintable() and not 0xD800 <= ord(char) <= 0xDFFF):
            out.append(char)
        else:
            out.append(char.encode("unicode_escape", "backslashreplace").decode("ascii"))
    body = "\n".join(indent + line if line and i else line for i, line in enumerate("".join(out).split("\n")))
    return f'{indent}"""{body}\n{indent}"""' if "\n" in text else f'{indent}"""{body}"""'


def old_typed_dict(self: Any, schema: dict[str, Any], title: str, depth: int, ref: str | None = None) -> str:
    fingerprint = self._fingerprint(schema)
    base = class_identifier(title)
    for name in (base, *(f"{base}{n}" for n in range(2, len(self.module.classes) + 2))):
        if self.module.fingerprints.get(name) == fingerprint:
            return name
        if name not in self.module.classes:
            break
    same = next((n for n, f in self.module.fingerprints.items() if f == fingerprint), None)
    if same is not None and not self.module.classes[same]:
        return same
    self.module.fingerprints[name] = fingerprint
    if same is not None:
        self.module.classes[name] = f"{name} = {same}\n"
        return name
    self.module.classes[name] = ""
    if ref is not None:
        self.in_progress[ref] = name
    source = self._class_source(name, schema, depth)
    if ref is not None:
        del self.in_progress[ref]
    del self.module.classes[name]
    self.module.classes[name] = source
    return name


@contextlib.contextmanager
def old_generator() -> Iterator[None]:
    saved = sdkgen.docstring, sdkgen._Types.typed_dict
    sdkgen.docstring, sdkgen._Types.typed_dict = old_docstring, old_typed_dict  # type: ignore[method-assign]
    try:
        yield
    finally:
        sdkgen.docstring, sdkgen._Types.typed_dict = saved  # type: ignore[method-assign]


# -- measuring -------------------------------------------------------------------------------------------


def seconds(work: Callable[[], Any], rounds: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(rounds):
        start = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - start)
    return median(times), result


def options_registry(count: int) -> ToolRegistry:
    """``count`` tools, each with an object titled Options of its own shape (as an MCP server's pydantic models)."""
    return ToolRegistry([Tool(
        name=f"configure_{n}", description=f"Configure thing {n}.", handler=lambda **_: None, namespace="things",
        input_schema={"type": "object", "properties": {"options": {
            "type": "object", "title": "Options", "properties": {f"setting_{n}": {"type": "integer"}}}}})
        for n in range(count)])


async def longest_stall(preparing: Callable[[], Awaitable[Any]]) -> float:
    """The longest the event loop went without running a ticker that wakes every 5 ms, while ``preparing``."""
    longest, last, done = 0.0, time.perf_counter(), False

    async def tick() -> None:
        nonlocal longest, last
        while not done:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            longest, last = max(longest, now - last), now

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.02)
    await preparing()
    done = True
    await ticker
    return longest


def stall_rows(registry: ToolRegistry) -> list[Row]:
    """A session start's tool preparation at 2,500 tools: the loop's longest stall, in a thread and not."""
    items = registry.tools()

    async def in_a_thread() -> None:
        await SessionTools(items).prepare()

    async def on_the_loop() -> None:  # as prepare() was: the registry and the SDK made on the event loop
        sdkgen.generate_sdk(ToolRegistry(items))

    stalled = asyncio.run(longest_stall(in_a_thread))
    before = asyncio.run(longest_stall(on_the_loop))
    return [make_row(BENCHMARK, f"longest event-loop stall while a session prepares {len(items)} tools",
                     stalled * 1000, "ms", baseline=before * 1000,
                     baseline_name="the same preparation on the event loop (as before)",
                     note="other sessions' cells and tool calls wait this long")]


def run(quick: bool) -> list[Row]:
    rounds = 1 if quick else 3
    definitions = stored_definitions()
    checked_rebuild(definitions[:20])  # imports jsonschema, outside the figures
    rebuilt, tools = seconds(lambda: recorded_tools(definitions, RecordedTools()), rounds)
    checked, _ = seconds(lambda: checked_rebuild(definitions), 1)  # seconds each: one round
    catalogue = ToolRegistry(tools)
    ms = 1000.0
    rows = [make_row(BENCHMARK, f"rebuilding {OPERATIONS} recorded tools (replay, resume)", rebuilt * ms, "ms",
                     baseline=checked * ms, baseline_name="the same, checking every schema with jsonschema")]
    for label, registry in ((f"the SDK of the {OPERATIONS}-operation catalogue", catalogue),
                            (f"the SDK of {OPERATIONS} tools with an Options object each",
                             options_registry(OPERATIONS))):
        generated, modules = seconds(lambda registry=registry: sdkgen.generate_sdk(registry), rounds)  # type: ignore[misc]
        with old_generator():
            before, old_modules = seconds(lambda registry=registry: sdkgen.generate_sdk(registry), 1)  # type: ignore[misc]
        same = json.dumps(modules, sort_keys=True) == json.dumps(old_modules, sort_keys=True)
        rows.append(make_row(BENCHMARK, f"generating {label}", generated * ms, "ms", baseline=before * ms,
                             baseline_name="the generator before (class-name scans, per-character docstrings)",
                             note="identical modules" if same else "THE MODULES DIFFER"))
    return rows + stall_rows(catalogue)


if __name__ == "__main__":
    bench_main(run, __doc__ or "", "one round of each figure")
