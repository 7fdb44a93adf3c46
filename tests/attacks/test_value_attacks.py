"""Attacks on the binary values of the tool bridge (numpy buffers, Arrow IPC), forged inside a real kernel.

The kernel's own encoder is swapped for one that returns what the attacker
chose, so each forged call travels exactly as an honest one does (comm
message, binary buffers). The host must answer each with a named error
(the call is ``invalid``: its arguments could not be decoded), run no tool,
allocate nothing near what the forged sizes declare, and go on serving.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import pytest_asyncio

from kernel_agent import Session
from kernel_agent.protocol import wire
from kernel_agent.tools.calls import CallStatus

from .support import module_loop

FORGE = """
import json
import numpy as np, pandas as pd, pyarrow as pa
from kernel_agent.protocol import wire as _wire
_real_encode = _wire.encode

def forge(args, buffers):
    _wire.encode = lambda *a, **k: (args, buffers)
    try:
        tools.echo(value=0)
    except ToolError as exc:
        print(type(exc).__name__, "|", exc.kind, "|", exc.message)
    else:
        print("ACCEPTED")
    finally:
        _wire.encode = _real_encode

def ipc(table, **options):
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=pa.ipc.IpcWriteOptions(**options)) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()

def arrow(buffer, kind="dataframe"):
    return {"value": {"__ka__": "arrow", "kind": kind, "buffer": 0}}, [buffer]

def array(dtype, shape, buffer):
    return {"value": {"__ka__": "ndarray", "dtype": dtype, "shape": shape, "buffer": 0}}, [buffer]

def with_pandas_metadata(change):
    table = pa.Table.from_pandas(pd.DataFrame({"a": [1, 2]}))
    metadata = json.loads(table.schema.metadata[b"pandas"])
    change(metadata)
    return table.replace_schema_metadata({b"pandas": json.dumps(metadata).encode()})

def nested_list(levels):
    arrow_type = pa.int64()
    for _ in range(levels):
        arrow_type = pa.list_(arrow_type)
    value = 1
    for _ in range(levels):
        value = [value]
    return pa.table({"deep": pa.array([value], type=arrow_type)})

deep_json = 0
for _ in range(300):
    deep_json = [deep_json]
"""

# (what the kernel forges, a phrase the host's error must hold)
FORGERIES = {
    "shaped dtype": ('array("(1000,1000,1000)f8", [1], b"\\0" * 8)', "not a plain scalar type"),
    "object dtype": ('array("|O", [1], b"\\0" * 8)', "not a plain scalar type"),
    "object dtype by name": ('array("object", [1], b"\\0" * 8)', "not a plain scalar type"),
    "structured dtype": ('array("f8,i4", [1], b"\\0" * 12)', "not a plain scalar type"),
    "shape larger than the buffer": ('array("<f8", [1000], b"\\0" * 8)', "but its buffer has 8"),
    "huge declared shape": ('array("<f8", [2**40, 2**40], b"\\0" * 8)', "but its buffer has 8"),
    "shape past the dimension bound": ('array("<f8", [2**62], b"")', "shape must be a list"),
    "negative shape": ('array("<f8", [-1, -8], b"\\0" * 64)', "shape must be a list"),
    "too many dimensions": ('array("<f8", [1] * 40, b"\\0" * 8)', "shape must be a list"),
    "buffer that was not sent": ('({"value": {"__ka__": "ndarray", "dtype": "<f8", "shape": [1], "buffer": 3}}, '
                                 '[b"\\0" * 8])', "names buffer 3"),
    "inline data that is not base64": ('({"value": {"__ka__": "ndarray", "dtype": "<f8", "shape": [1], '
                                       '"base64": "!!!!"}}, [])', "could not be decoded"),
    "garbage for an Arrow stream": ('arrow(b"\\xff\\xff\\xff\\xff" + bytes(range(256)) * 4)', "could not be decoded"),
    "truncated Arrow stream": ('arrow(ipc(pa.table({"a": list(range(1000))}))[:-100])', "could not be decoded"),
    "compressed Arrow stream (a zstd bomb)": ('arrow(ipc(pa.table({"z": np.zeros(20_000_000, dtype="int8")}), '
                                              'compression="zstd"))', "compressed buffers"),
    "null columns of a billion rows": ('arrow(ipc(pa.table({"n": pa.nulls(10**9)})))', "cells"),
    "a time zone that is a path": ('arrow(ipc(pa.table({"t": pa.array([0], pa.timestamp("ns", '
                                   'tz="../../../../etc/passwd"))})))', "time zone"),
    "types nested past the bound": ('arrow(ipc(nested_list(8)))', "nests types"),
    "a type outside the plain set": ('arrow(ipc(pa.table({"u": pa.array([(1, 2, 3)], '
                                     'pa.month_day_nano_interval())})))', "does not cross"),
    "pandas metadata with a huge bytes dtype for the column names": (
        'arrow(ipc(with_pandas_metadata(lambda m: m["column_indexes"][0].update(pandas_type="a1000000000"))))',
        "pandas type"),
    "pandas metadata with a shaped numpy dtype": (
        'arrow(ipc(with_pandas_metadata(lambda m: m["columns"][0].update(numpy_type="(100000000,)f8"))))', "dtype"),
    "pandas metadata naming another extension dtype": (
        'arrow(ipc(with_pandas_metadata(lambda m: m["columns"][0].update(numpy_type="Sparse[int64]"))))', "dtype"),
    "pandas metadata with several column levels": (
        'arrow(ipc(with_pandas_metadata(lambda m: m.update(column_indexes=m["column_indexes"] * 2))))', "MultiIndex"),
    "pandas metadata naming a missing index column": (
        'arrow(ipc(with_pandas_metadata(lambda m: m.update(index_columns=["nope"]))))', "does not have"),
    "a Series of two columns": ('arrow(ipc(pa.table({"a": [1], "b": [2]})), kind="series")', "2 columns"),
    "unknown kind of Arrow value": ('arrow(ipc(pa.table({"a": [1]})), kind="module")', "unknown kind"),
    "JSON nested 300 deep": ('({"value": deep_json}, [])', "nested more than"),
}


class Runs:
    """Counts the tool's runs on the host: a forged call must never reach it."""

    def __init__(self) -> None:
        self.count = 0

    def tools(self) -> list[Any]:
        def echo(value: Any) -> str:
            """The type of what arrived."""
            self.count += 1
            return type(value).__name__

        return [echo]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def forger(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Session, Runs]]:
    workspace = tmp_path_factory.mktemp("forger") / "workspace"
    workspace.mkdir()
    runs = Runs()
    async with Session(workspace, tools=runs.tools(), notebook=False, default_timeout=120) as session:
        setup = await session.execute(FORGE)
        assert setup.ok, setup.error
        yield session, runs


def _peak_rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/self/status")


@module_loop
@pytest.mark.parametrize("name", list(FORGERIES))
async def test_a_forged_value_is_a_named_error_on_the_host(forger: tuple[Session, Runs], name: str) -> None:
    session, runs = forger
    code, phrase = FORGERIES[name]
    before = _peak_rss_bytes()
    result = await session.execute(f"forge(*{code})")
    assert result.ok, result.error
    line = result.stdout.strip()
    assert line.startswith("ToolValidationError | invalid | the arguments could not be decoded: "), line
    assert phrase in line, line
    (call,) = result.tool_calls
    assert call.status is CallStatus.INVALID and phrase in (call.error.message if call.error else "")
    assert runs.count == 0
    # Nothing near the declared sizes was allocated (a billion cells, a 2**80-element array, 20 MB unzstd'd).
    assert _peak_rss_bytes() - before < 150 * 1024**2


@module_loop
async def test_binary_values_count_against_the_request_cap(forger: tuple[Session, Runs]) -> None:
    """A frame's buffer is part of the request's size: over ``max_request_bytes`` it is refused undecoded."""
    session, runs = forger
    session.bridge.max_request_bytes = 1_000_000
    try:
        result = await session.execute(
            "try:\n    tools.echo(value=pd.DataFrame({'a': np.zeros(500_000)}))\n"
            "except ToolValidationError as exc:\n    print(exc.message)")
    finally:
        session.bridge.max_request_bytes = 32 * 1024**2
    assert result.ok, result.error
    assert "the limit is 1,000,000" in result.stdout
    assert runs.count == 0


@module_loop
async def test_the_host_serves_honest_values_after_the_attacks(forger: tuple[Session, Runs]) -> None:
    session, runs = forger
    result = await session.execute(
        "print(tools.echo(value=pd.DataFrame({'a': [1.5]})), tools.echo(value=np.arange(3)))")
    assert result.ok, result.error
    assert result.stdout.strip() == "DataFrame ndarray"
    assert runs.count == 2


def test_mutated_arrow_streams_decode_or_fail_with_a_decode_error() -> None:
    """Random byte changes anywhere in a valid stream (the flatbuffers metadata included): a frame, or a
    DecodeError; never another exception."""
    frame = pd.DataFrame({"a": [1.5, None], "s": ["x", None], "t": pd.to_datetime(["2026-01-01", None])})
    data, buffers = wire.encode(frame)
    stream = buffers[0]
    rng = random.Random(13)
    outcomes = {"decoded": 0, "refused": 0}
    for _ in range(400):
        mutated = bytearray(stream)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        try:
            wire.decode(data, [bytes(mutated)])
            outcomes["decoded"] += 1
        except wire.DecodeError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0 and sum(outcomes.values()) == 400


def test_a_compressed_stream_is_refused_before_it_is_decompressed() -> None:
    table = pa.table({"z": np.zeros(1_000_000, dtype="int64")})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=pa.ipc.IpcWriteOptions(compression="lz4")) as writer:
        writer.write_table(table)
    stream = sink.getvalue().to_pybytes()
    assert len(stream) < 100_000  # 8 MB of zeros in a few kilobytes
    with pytest.raises(wire.DecodeError, match="compressed buffers"):
        wire.decode({"__ka__": "arrow", "kind": "dataframe", "buffer": 0}, [stream])


def test_a_pyarrow_that_unpickles_extension_types_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """pyarrow before 14.0.1 unpickles the metadata of 'arrow.py_extension_type' columns (CVE-2023-47248):
    with such a version installed, the host reads no Arrow stream at all."""
    data, buffers = wire.encode(pd.DataFrame({"a": [1]}))
    monkeypatch.setattr(pa, "__version__", "13.0.0")
    with pytest.raises(wire.DecodeError, match="before 14.0.1"):
        wire.decode(data, buffers)
