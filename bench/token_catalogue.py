"""The catalogue section of bench_tokens.py: the fixed context at 10 to 2,500 tools, and search at 2,500.

The tools come from a generated OpenAPI document (tests/catalogue.py: 50 tags with descriptions, 2-6
parameters of various types, request bodies, summaries and descriptions shaped like a real SaaS API) turned
into tools by ``OpenApiSource``, as a user would load one. For each size:

* **kernel-agent's fixed context**: the system prompt an ``Agent`` sends (rules and the tool manifest, at its
  default settings) plus the code tool's JSON schema, the part of every model call that does not depend
  on the task;
* **the same prompt with the old manifest** (every tool listed with its summary), the baseline this work
  replaces;
* **classic tool calling**: a one-line system prompt and every tool's full JSON schema, the way a classic
  agent is given its tools.

Then search at 2,500 tools, host (ToolRegistry.search) and kernel (``tools.search``, the SDK loaded in
this process the way the kernel loads it), each next to the linear search it replaces, and the kernel's
SDK load (lazy namespaces against running every module at start).
"""

from __future__ import annotations

import inspect
import json
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from kernel_agent.agent.prompt import system_prompt  # noqa: E402
from kernel_agent.kernel import sdk  # noqa: E402
from kernel_agent.models import CODE_TOOL  # noqa: E402
from kernel_agent.tools.manifest import build_manifest, full_listing  # noqa: E402
from kernel_agent.tools.openapi import OpenApiSource  # noqa: E402
from kernel_agent.tools.registry import ToolRegistry  # noqa: E402
from kernel_agent.tools.sdkgen import generate_sdk  # noqa: E402
from kernel_agent.tools.tool import Tool  # noqa: E402
from tests.catalogue import api_document  # noqa: E402

from _benchlib import Row, Target, make_row  # noqa: E402

SIZES = (10, 100, 1_000, 2_500)
CEILING = Target(1_500, "tokens")  # the issue: at most 1,500 tokens at 2,500 tools
GROWTH = Target(1.2, "x")  # and no more than 1.2x the 10-tool figure
QUERIES = ["create invoice", "list the notes of a customer", "getCustomer", "delete webhook",
           "export payouts csv", "remove a reminder from a ticket", "restore archived subscription",
           "count shipments", "API key permissions", "refund a payment"]


def registry_of(operations: int) -> ToolRegistry:
    source = OpenApiSource(api_document(operations), base_url="http://127.0.0.1:9")
    return ToolRegistry([source])


def code_tool_schema() -> str:
    return json.dumps([{"name": CODE_TOOL.name, "description": CODE_TOOL.description,
                        "input_schema": CODE_TOOL.input_schema}])


def fixed_context(manifest: str, tokens: Callable[[str], int], overhead: int) -> int:
    """The system prompt an Agent sends with ``manifest`` plus the code tool's schema, in tokens."""
    prompt = system_prompt(manifest, observation_limit=4_000, tool_name=CODE_TOOL.name)
    return tokens(prompt) + tokens(code_tool_schema()) + overhead


def classic_context(registry: ToolRegistry, system: str, tokens: Callable[[str], int], overhead: int) -> int:
    schemas = [{"name": t.qualified_name.replace(".", "_"), "description": t.description,
                "input_schema": t.input_schema} for t in registry.tools()]
    return tokens(system + "\n\nTools:\n" + json.dumps(schemas)) + overhead


# -- the searches this replaces (as they were), for the same-run baselines ------------------------------


def old_host_search(registry: ToolRegistry, query: str) -> list[Tool]:
    words = query.lower().split()
    scored: list[tuple[int, Tool]] = []
    for t in registry.tools():
        name = f"{t.qualified_name} {registry.path(t)}".lower()
        if all(word in f"{name} {t.description.lower()}" for word in words):
            scored.append((-sum(word in name for word in words), t))
    return [t for _, t in sorted(scored, key=lambda pair: pair[0])]


def old_kernel_search(tools: sdk.Namespace, query: str, limit: int = 20) -> list[str]:
    words = query.lower().split()
    found = []
    for path, function in _walk(tools):
        doc = inspect.getdoc(function) or ""
        if all(word in f"{path} {doc}".lower() for word in words):
            found.append(f"{path}{inspect.signature(function)}: {doc.split(chr(10), 1)[0]}")
    return found[:limit]


def _walk(namespace: sdk.Namespace) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    for key in dir(namespace):
        value = getattr(namespace, key)
        if isinstance(value, sdk.Namespace):
            found.extend(_walk(value))
        elif callable(value) and hasattr(value, "__kernel_agent_tool__"):
            found.append((f"{namespace._name}.{key}", value))
    return found


def per_query_ms(search: Callable[[str], object], rounds: int = 3) -> float:
    """The median time of one query over QUERIES, repeated ``rounds`` times, in milliseconds."""
    times = []
    for _ in range(rounds):
        for query in QUERIES:
            started = time.perf_counter()
            search(query)
            times.append(time.perf_counter() - started)
    return statistics.median(times) * 1_000


def _forget_sdk_modules() -> None:
    for name in [n for n in sys.modules if n == "kernel_agent_tools" or n.startswith("kernel_agent_tools.")]:
        del sys.modules[name]


def _build(modules: dict[str, str], eager: bool) -> sdk.Namespace:
    _forget_sdk_modules()
    tools = sdk.build_tools(modules)
    if eager:
        for child in [tools, *(v for v in vars(tools).values() if isinstance(v, sdk.Namespace))]:
            child._load()
    return tools


def load_sdk(modules: dict[str, str], *, eager: bool) -> tuple[sdk.Namespace, float, float]:
    """``tools`` from the modules, the seconds it took and the MB it kept (eager: every module run)."""
    tracemalloc.start()  # a pass of its own: tracing slows the loading several times
    _build(modules, eager)
    kept = tracemalloc.get_traced_memory()[0] / 1e6
    tracemalloc.stop()
    started = time.perf_counter()
    tools = _build(modules, eager)
    return tools, time.perf_counter() - started, kept


# -- rows ---------------------------------------------------------------------------------------------------


def catalogue_rows(tokens: Callable[[str], int], counter_name: str, benchmark: str, overhead: int,
                   classic_system: str, log: Callable[[str], None]) -> list[Row]:
    rows: list[Row] = []
    fixed: dict[int, int] = {}
    big: ToolRegistry | None = None
    for operations in SIZES:
        started = time.perf_counter()
        registry = registry_of(operations)
        manifest = build_manifest(registry)
        fixed[operations] = fixed_context(manifest, tokens, overhead)
        before = fixed_context(full_listing(registry), tokens, overhead)
        classic = classic_context(registry, classic_system, tokens, overhead)
        form = "every tool listed" if manifest == full_listing(registry) else "a namespace overview"
        rows.append(make_row(
            benchmark, f"catalogue of {operations:,} tools: fixed context (rules, manifest, code-tool schema)",
            fixed[operations], "tokens", baseline=classic, baseline_name="classic tool calling: every full schema",
            target=CEILING if operations == SIZES[-1] else None,
            note=f"{len(registry.namespaces())} namespaces; the manifest is {form} ({len(manifest):,} characters); "
                 f"with the old manifest (every tool with its summary) the fixed context was {before:,} tokens; "
                 f"counted with {counter_name}"))
        log(f"catalogue {operations}: {fixed[operations]} tokens (old manifest {before}, classic {classic}) "
            f"in {time.perf_counter() - started:.1f} s")
        big = registry
    growth = fixed[SIZES[-1]] / fixed[SIZES[0]]
    rows.append(make_row(benchmark, f"catalogue: fixed context at {SIZES[-1]:,} tools / at {SIZES[0]} tools",
                         round(growth, 3), "x", target=GROWTH,
                         note=f"{fixed[SIZES[-1]]:,} / {fixed[SIZES[0]]:,} tokens"))
    assert big is not None
    rows += search_rows(big, benchmark, log)
    return rows


def search_rows(registry: ToolRegistry, benchmark: str, log: Callable[[str], None]) -> list[Row]:
    size = f"{len(registry):,} tools"
    started = time.perf_counter()
    registry.search("warm")  # the index is built at the first search
    index_build = time.perf_counter() - started
    host = per_query_ms(lambda q: registry.search(q, limit=20))
    host_old = per_query_ms(lambda q: old_host_search(registry, q))
    modules = generate_sdk(registry)
    eager, eager_seconds, eager_mb = load_sdk(modules, eager=True)
    kernel_old = per_query_ms(lambda q: old_kernel_search(eager, q), rounds=1)
    tools, lazy_seconds, lazy_mb = load_sdk(modules, eager=False)
    started = time.perf_counter()
    tools.search("warm")
    kernel_index = time.perf_counter() - started
    kernel = per_query_ms(lambda q: tools.search(q))
    _forget_sdk_modules()
    log(f"search at {size}: host {host:.2f} ms (old {host_old:.2f}), kernel {kernel:.2f} ms (old {kernel_old:.1f}); "
        f"SDK load {lazy_seconds:.3f} s lazy vs {eager_seconds:.2f} s eager")
    return [
        make_row(benchmark, f"search at {size}: host, one query (ToolRegistry.search, ranked)", round(host, 3), "ms",
                 baseline=round(host_old, 3), baseline_name="the old linear substring search",
                 note=f"median over {len(QUERIES)} realistic queries; the index is built once, at the first "
                      f"search: {index_build * 1_000:.0f} ms"),
        make_row(benchmark, f"search at {size}: kernel, one query (tools.search, ranked)", round(kernel, 3), "ms",
                 baseline=round(kernel_old, 1), baseline_name="the old search (inspect.signature per tool per query)",
                 note=f"the SDK loaded in this process as the kernel loads it; the index is built from the modules' "
                      f"catalogue lines at the first search: {kernel_index * 1_000:.0f} ms, no module run"),
        make_row(benchmark, f"kernel SDK load at {size} (tools object ready)", round(lazy_seconds, 3), "s",
                 baseline=round(eager_seconds, 3), baseline_name="every namespace's module run at start (before)",
                 note=f"memory kept {lazy_mb:.1f} MB lazy vs {eager_mb:.1f} MB eager (tracemalloc); a namespace's "
                      f"module runs at its first use; {sum(map(len, modules.values())) / 1e6:.1f} MB of SDK source"),
    ]


if __name__ == "__main__":  # the section alone: python bench/token_catalogue.py
    from _benchlib import console_table
    from _tokenizer import load_counter

    def _log(message: str) -> None:
        print(f"[token_catalogue] {message}", file=sys.stderr, flush=True)

    counter = load_counter(log=_log)
    print(console_table(catalogue_rows(counter.count, counter.name, "tokens", 4,
                                       "You are a helpful assistant. Answer the user's question; call the tools "
                                       "below as needed.", _log)))
