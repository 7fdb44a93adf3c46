"""Values that are small on the wire and huge once decoded (Arrow streams, string arrays), forged in a real kernel.

A null array has no buffers and a dictionary is sent once, so the bytes a
kernel sends say nothing about what ``to_pandas`` builds: a list of a
hundred million nulls, or a dictionary of one long string inside a struct
(decoded, so copied, for every row). The host must refuse them with a named
error, decode binary values off the event loop, and go on serving.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pandas as pd
import pytest
import pytest_asyncio

from kernel_agent import Session
from kernel_agent.protocol import tables, wire
from kernel_agent.tools.calls import CallStatus

from .support import module_loop
from .test_value_attacks import FORGE, Runs, _peak_rss_bytes

AMPLIFIERS = FORGE + """
def one_string_per_row(rows, wrap):
    codes = pa.DictionaryArray.from_arrays(pa.array([0] * rows, pa.int8()), pa.array(["x" * 50_000]))
    if wrap == "struct":
        return pa.table({"c": pa.StructArray.from_arrays([codes], names=["a"])})
    return pa.table({"c": pa.ListArray.from_arrays(pa.array([0, rows], pa.int32()), codes)})

def nulls_in_a_list(count):
    return pa.table({"c": pa.ListArray.from_arrays(pa.array([0, count], pa.int32()), pa.nulls(count))})

def null_fields(rows, fields):
    names = [f"f{i}" for i in range(fields)]
    return pa.table({"c": pa.StructArray.from_arrays([pa.nulls(rows)] * fields, names=names)})
"""

# (what the kernel forges, a phrase the host's error must hold)
FORGERIES = {
    # 70 kB on the wire, 1 GB (and seconds on the event loop) in pandas
    "a dictionary of one long string inside a struct": ('arrow(ipc(one_string_per_row(20_000, "struct")))',
                                                        "dictionary inside"),
    "a dictionary of one long string inside a list": ('arrow(ipc(one_string_per_row(20_000, "list")))',
                                                      "dictionary inside"),
    # 336 bytes on the wire, a Python None per element
    "a list of a billion nulls": ('arrow(ipc(nulls_in_a_list(10**9)))', "values in its columns"),
    # 4,000 fields of no data: a dict of 4,000 keys per row
    "a struct of thousands of null fields": ('arrow(ipc(null_fields(3_000, 4_000)))', "values in its columns"),
    # Not Arrow, the same flaw: a string array's width was estimated at 32 characters for an item that is not
    # text, but numpy takes its str(): 100 kB of JSON became 800 MB (every element as wide as the longest)
    "a string array with a long dict item": (
        '({"value": {"__ka__": "ndarray", "dtype": "<U", "items": [0] * 2000 + [{"a": "x" * 100_000}]}}, [])',
        "holds a dict item"),
}


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def forger(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Session, Runs]]:
    workspace = tmp_path_factory.mktemp("arrow-forger") / "workspace"
    workspace.mkdir()
    runs = Runs()
    async with Session(workspace, tools=runs.tools(), notebook=False, default_timeout=120) as session:
        setup = await session.execute(AMPLIFIERS)
        assert setup.ok, setup.error
        yield session, runs


@module_loop
@pytest.mark.parametrize("name", list(FORGERIES))
async def test_an_amplifying_table_is_a_named_error_on_the_host(forger: tuple[Session, Runs], name: str) -> None:
    session, runs = forger
    code, phrase = FORGERIES[name]
    before = _peak_rss_bytes()
    result = await session.execute(f"forge(*{code})")
    assert result.ok, result.error
    line = result.stdout.strip()
    assert line.startswith("ToolValidationError | invalid | the arguments could not be decoded: "), line
    assert phrase in line, line
    (call,) = result.tool_calls
    assert call.status is CallStatus.INVALID
    assert runs.count == 0
    assert _peak_rss_bytes() - before < 150 * 1024**2


@module_loop
async def test_a_small_table_is_decoded_off_the_event_loop(forger: tuple[Session, Runs],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A few hundred bytes of Arrow can cost seconds of pandas: a table is never decoded on the shared loop."""
    session, runs = forger
    on_loop: list[bool] = []
    real = tables.from_ipc

    def spy(*args: Any) -> Any:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return real(*args)

    monkeypatch.setattr(tables, "from_ipc", spy)
    result = await session.execute("print(tools.echo(value=pd.DataFrame({'a': [1.5]})))")
    assert result.ok, result.error
    assert result.stdout.strip() == "DataFrame"
    assert on_loop == [False]
    runs.count = 0


@module_loop
async def test_honest_nested_tables_and_categoricals_still_cross(forger: tuple[Session, Runs]) -> None:
    session, runs = forger
    result = await session.execute(
        "print(tools.echo(value=pd.DataFrame({'k': pd.Categorical(['a', 'b', 'a']), 'l': [[1, 2], [], [3]],"
        " 's': [{'x': 1}, {'x': 2}, None]})))")
    assert result.ok, result.error
    assert result.stdout.strip() == "DataFrame"
    assert runs.count == 1


def test_a_long_timestamp_text_is_refused_before_pandas_parses_it() -> None:
    """pandas' Timestamp parser is quadratic in its input: 200 kB of digits (a message decoded on the event loop)
    took 3 s; the wire only ever carries an isoformat of a few dozen characters."""
    with pytest.raises(wire.DecodeError, match="a Timestamp's text is 200,000 characters"):
        wire.decode({"__ka__": "timestamp", "value": "1" * 200_000}, [])
    honest = pd.Timestamp("2026-01-02 03:04:05.123456789+05:30")
    assert wire.decode(*wire.encode(honest)) == honest
