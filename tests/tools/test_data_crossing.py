"""Faithful data across the tool bridge, both ways, with real pandas and numpy in a real sandboxed kernel."""

from __future__ import annotations

import math
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import pytest_asyncio

from kernel_agent import Session
from kernel_agent.protocol import tables, wire
from kernel_agent.tools.calls import CallStatus

module_loop = pytest.mark.asyncio(loop_scope="module")

# The same frame is built on both sides from this source: every kind of column the issue names.
FRAME_SOURCE = """
import numpy as np, pandas as pd
def make_frame():
    return pd.DataFrame({
        "price": [1.5, np.nan, 3.25, np.inf],
        "count": np.array([1, 2, 3, 4], dtype="int64"),
        "maybe": pd.array([1, None, 3, pd.NA], dtype="Int64"),
        "flag": pd.array([True, None, False, True], dtype="boolean"),
        "label": ["a", None, "c", "d"],
        "text": pd.array(["x", pd.NA, "z", "w"], dtype="string"),
        "when": pd.to_datetime(["2026-01-01", None, "2026-03-01 12:00:00.000000001", "2026-04-01"], format="ISO8601"),
        "when_tz": pd.to_datetime(["2026-01-01", "2026-02-01", None, "2026-04-01"]).tz_localize("Europe/Paris"),
        "took": pd.to_timedelta([1, None, 3, 4], unit="s"),
        "kind": pd.Categorical(["x", "y", None, "x"]),
        "small": np.array([1, 2, 3, 4], dtype="uint8"),
    }, index=pd.Index([10, 20, 30, 40], name="row_id"))
"""
namespace: dict[str, Any] = {}
exec(FRAME_SOURCE, namespace)  # the same source as in the kernel
make_frame = namespace["make_frame"]

ARRAYS_SOURCE = """
import numpy as np
def make_arrays():
    return {
        "f8": np.linspace(0, 1, 12).reshape(3, 4),
        "i4_fortran": np.asfortranarray(np.arange(12, dtype="int32").reshape(3, 4)),
        "big_endian": np.arange(5, dtype=">i8"),
        "u1_3d": np.arange(24, dtype="uint8").reshape(2, 3, 4),
        "bool": np.array([True, False, True]),
        "c16": np.array([1 + 2j, np.nan + 0j]),
        "dates": np.array(["2026-01-01", "NaT"], dtype="datetime64[ns]"),
        "spans": np.array([1, 2], dtype="timedelta64[ms]"),
        "text": np.array(["a", "bcd"]),
        "empty": np.zeros((0, 5)),
        "objects": np.array([1, "a", None], dtype=object),
    }
"""
exec(ARRAYS_SOURCE, namespace)
make_arrays = namespace["make_arrays"]


class Unknown:
    """An arbitrary object with no JSON form."""


OPEN_FILES: list[Any] = []  # closed when the module's session ends


def frame() -> Any:
    """A DataFrame with every kind of column."""
    return make_frame()


def series() -> Any:
    """A named Series with a string index."""
    return pd.Series([1.0, np.nan, 3.0], index=pd.Index(["a", "b", "c"], name="key"), name=("price", 2))


def arrays() -> dict[str, Any]:
    """Arrays of several dtypes and shapes."""
    return make_arrays()


def check_frame(df: Any) -> str:
    """Compare a DataFrame sent by the kernel with the one built here."""
    pd.testing.assert_frame_equal(df, make_frame())
    return "equal"


def check_arrays(values: Any) -> list[str]:
    """Compare arrays sent by the kernel with the ones built here."""
    expected = make_arrays()
    for name, array in values.items():
        assert type(array) is np.ndarray, name
        assert array.dtype == expected[name].dtype and array.shape == expected[name].shape, name
        np.testing.assert_array_equal(array, expected[name])
    return sorted(values)


def broken(kind: str) -> Any:
    """Results that cannot cross the bridge."""
    if kind == "generator":
        return {"rows": [1, 2, 3, (n for n in range(3))]}
    if kind == "file":
        OPEN_FILES.append(open(__file__))  # noqa: SIM115 - closed by the fixture
        return {"handle": OPEN_FILES[-1]}
    if kind == "lock":
        return [threading.Lock()]
    return {"nested": {"deep": [Unknown()]}}


def non_finite() -> list[float]:
    """NaN and infinities in plain JSON values."""
    return [math.nan, math.inf, -math.inf, 1.5]


def echo(value: Any) -> str:
    """What the host received."""
    return type(value).__name__


def top_rows(df: pd.DataFrame, weights: np.ndarray, n: int = 2) -> pd.DataFrame:
    """The first rows, weighted (typed parameters: checked as instances on the host)."""
    return df.head(n).assign(weight=weights[:n])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def session(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Session]:
    workspace = tmp_path_factory.mktemp("data") / "workspace"
    workspace.mkdir()
    notebook = workspace.parent / "data.ipynb"
    tools = [frame, series, arrays, check_frame, check_arrays, broken, non_finite, echo, top_rows]
    async with Session(workspace, tools=tools, notebook=notebook, default_timeout=120, tool_timeout=60) as started:
        result = await started.execute(FRAME_SOURCE + ARRAYS_SOURCE)
        assert result.ok, result.error
        yield started
    for handle in OPEN_FILES:
        handle.close()


@module_loop
async def test_a_dataframe_from_a_host_tool_is_the_same_frame_in_the_kernel(session: Session) -> None:
    result = await session.execute(
        "got = tools.frame()\n"
        "pd.testing.assert_frame_equal(got, make_frame())\n"
        "print(type(got).__name__, got.index.name, got['maybe'].dtype, got['when_tz'].dt.tz, got['kind'].dtype)")
    assert result.ok, result.error
    assert result.stdout.strip() == "DataFrame row_id Int64 Europe/Paris category"
    (call,) = result.tool_calls
    # Arrow IPC in a binary buffer, kept inline (base64) in the record: not JSON of every cell.
    assert call.status is CallStatus.OK and call.result["__ka__"] == "arrow" and "base64" in call.result
    pd.testing.assert_frame_equal(wire.decode(call.result), make_frame())


@module_loop
async def test_a_dataframe_passed_to_a_tool_is_the_same_frame_on_the_host(session: Session) -> None:
    result = await session.execute("print(tools.check_frame(make_frame()))")
    assert result.ok, result.error
    assert result.stdout.strip() == "equal"
    (call,) = result.tool_calls
    assert call.arguments["df"]["__ka__"] == "arrow"


@module_loop
async def test_a_series_keeps_its_name_index_and_dtype(session: Session) -> None:
    result = await session.execute(
        "s = tools.series()\nprint(type(s).__name__, s.name, s.index.name, s.dtype, s.isna().tolist())")
    assert result.ok, result.error
    assert result.stdout.strip() == "Series ('price', 2) key float64 [False, True, False]"


@module_loop
async def test_numpy_arrays_keep_dtype_shape_and_values_both_ways(session: Session) -> None:
    result = await session.execute(
        "got, expected = tools.arrays(), make_arrays()\n"
        "for name, array in expected.items():\n"
        "    assert type(got[name]) is np.ndarray and got[name].dtype == array.dtype, name\n"
        "    assert got[name].shape == array.shape, name\n"
        "    np.testing.assert_array_equal(got[name], array)\n"
        "got['f8'][0, 0] = 9  # the kernel's own, writable copy\n"
        "print(len(tools.check_arrays(make_arrays())))")
    assert result.ok, result.error
    assert result.stdout.strip() == str(len(make_arrays()))


@module_loop
@pytest.mark.parametrize(("kind", "path", "type_name"), [
    ("generator", 'result["rows"][3]', "generator"),
    ("file", 'result["handle"]', "_io.TextIOWrapper"),
    ("lock", "result[0]", "_thread.lock"),
    ("object", 'result["nested"]["deep"][0]', f"{Unknown.__module__}.Unknown"),
])
async def test_a_result_that_cannot_cross_is_a_named_error_with_its_path(
        session: Session, kind: str, path: str, type_name: str) -> None:
    result = await session.execute(
        f"try:\n    tools.broken({kind!r})\nexcept ToolResultError as exc:\n    print(exc.kind, '|', exc.message)")
    assert result.ok, result.error
    kind_seen, message = result.stdout.strip().split(" | ", 1)
    assert kind_seen == "unserializable"
    assert f"{path} cannot cross the bridge: it is of type {type_name};" in message
    (call,) = result.tool_calls
    assert call.status is CallStatus.UNSERIALIZABLE and path in call.error.message


@module_loop
async def test_arguments_that_cannot_cross_fail_in_the_cell_before_anything_is_sent(session: Session) -> None:
    result = await session.execute(
        "try:\n    tools.echo(value={'rows': [1, (n for n in range(3))]})\n"
        "except UnserializableValue as exc:\n    print(type(exc).__name__, exc)")
    assert result.ok, result.error
    assert result.stdout.startswith('UnserializableValue arguments["value"]["rows"][1] cannot cross the bridge: '
                                    "it is of type generator")
    assert result.tool_calls == []  # nothing reached the host
    too_many = await session.execute(
        "try:\n    tools.echo(value=[b'x'] * 4001)\nexcept UnserializableValue as exc:\n    print(exc)")
    assert too_many.ok and "4,001 binary values" in too_many.stdout and too_many.tool_calls == []


@module_loop
async def test_tools_typed_with_dataframes_and_arrays(session: Session) -> None:
    """A parameter annotated ``pd.DataFrame`` is an instance check on the host, and the SDK shows the class."""
    result = await session.execute(
        "import inspect\nprint(inspect.signature(tools.top_rows))\n"
        "print(tools.top_rows(make_frame(), np.array([0.5, 2.0, 3.0]))[['count', 'weight']].to_dict('list'))\n"
        "try:\n    tools.top_rows([1], np.ones(2))\nexcept ToolValidationError as exc:\n    print(exc.message)")
    assert result.ok, result.error
    signature, rows, refused = result.stdout.splitlines()
    assert signature == "(df: 'pandas.DataFrame', weights: 'numpy.ndarray', n: 'int' = 2) -> 'pandas.DataFrame'"
    assert rows == "{'count': [1, 2], 'weight': [0.5, 2.0]}"
    assert "df: Input should be an instance of DataFrame" in refused


@module_loop
async def test_nan_and_infinities_in_plain_values_stay_floats(session: Session) -> None:
    result = await session.execute(
        "v = tools.non_finite()\nprint([type(x).__name__ for x in v], math.isnan(v[0]), v[1:])\n"
        "print(tools.echo(float('nan')))".replace("print([", "import math\nprint(["))
    assert result.ok, result.error
    assert result.stdout.splitlines() == ["['float', 'float', 'float', 'float'] True [inf, -inf, 1.5]", "float"]


async def test_replay_gives_back_the_same_frame(tmp_path: Path) -> None:
    """A recorded DataFrame result is served again by replay (the record keeps it as Arrow) and audits intact."""
    from kernel_agent.verify.audit import audit_notebook
    from kernel_agent.verify.replay import replay

    notebook = tmp_path / "frame.ipynb"
    (tmp_path / "ws").mkdir()
    tools = [frame, check_frame]
    async with Session(tmp_path / "ws", tools=tools, notebook=notebook, default_timeout=120) as recording:
        assert (await recording.execute(FRAME_SOURCE)).ok
        result = await recording.execute(
            "got = tools.frame()\npd.testing.assert_frame_equal(got, make_frame())\n"
            "print(got.dtypes.to_dict(), got.index.name, tools.check_frame(got))")
        assert result.ok, result.error
    report = await replay(notebook)
    assert report.faithful, report.first_divergence
    assert report.cells == 2 and report.unrecorded_calls == []
    assert audit_notebook(notebook).verdict == "intact"

    # Re-executed by Jupyter tools, the kernel serves the same calls from the notebook (kernel/replay.py).
    from kernel_agent.kernel import replay as in_kernel
    from kernel_agent.protocol import strict_json

    recorded = in_kernel.Recording(strict_json.loads(notebook.read_bytes()), [notebook.with_name("frame.files")])
    bridge = in_kernel.RecordingBridge(recorded)
    bridge.begin_cell(recorded.cells[-1].source)
    pd.testing.assert_frame_equal(bridge.call("frame", {}), make_frame())
    assert bridge.call("check_frame", {"df": make_frame()}) == "equal"


# -- plain forms, for a receiver without the library -----------------------------------------------------


def test_without_pyarrow_on_the_receiver_a_frame_goes_as_json_and_says_so() -> None:
    sent_notes: list[str] = []
    data, buffers = wire.encode({"df": make_frame()}, accepts=(), notes=sent_notes)
    assert buffers == [] and data["df"]["__ka__"] == "dataframe"
    assert sent_notes and "plain JSON form" in sent_notes[0]
    notes: list[str] = []
    got = wire.decode(data, buffers, notes=notes)["df"]
    assert isinstance(got, pd.DataFrame) and list(got.index) == [10, 20, 30, 40]
    assert math.isnan(got["price"][20]) and got["maybe"][40] is pd.NA and notes


def test_without_pandas_on_the_receiver_a_frame_is_a_list_of_records(monkeypatch: pytest.MonkeyPatch) -> None:
    data, buffers = wire.encode(make_frame().reset_index(), accepts=())
    monkeypatch.setattr(tables, "pandas_module", lambda: None)
    notes: list[str] = []
    records = wire.decode(data, buffers, notes=notes)
    assert isinstance(records, list) and records[0]["row_id"] == 10 and records[0]["label"] == "a"
    assert "list of records" in notes[0]


def test_without_numpy_on_the_receiver_an_array_is_nested_lists() -> None:
    notes: list[str] = []
    data, buffers = wire.encode(np.arange(6).reshape(2, 3), accepts=(), notes=notes)
    assert buffers == [] and data["items"] == [[0, 1, 2], [3, 4, 5]] and notes


async def test_a_kernel_without_pyarrow_gets_a_plain_frame_and_a_warning(tmp_path: Path) -> None:
    """The kernel says in its comm_open what it decodes; one that cannot read Arrow gets the JSON form of a
    frame, and the model's code sees a PlainFormWarning saying so."""
    (tmp_path / "ws").mkdir()
    async with Session(tmp_path / "ws", tools=[frame], notebook=False, default_timeout=120) as plain:
        reopened = await plain.execute(
            "import importlib.util\n"
            "from kernel_agent.protocol import values\n"
            "from kernel_agent.kernel import bridge as _bridge, sdk as _sdk\n"
            "_find = importlib.util.find_spec\n"
            "importlib.util.find_spec = lambda name, *a: None if name == 'pyarrow' else _find(name, *a)\n"
            "values.local_accepts.cache_clear()\n"
            "kernel = get_ipython().kernel\n"
            "kernel.bridge.close()\n"
            "kernel.bridge = _bridge.BridgeClient(60.0, kernel.bridge.host_accepts)\n"
            "_sdk.attach(kernel.bridge)\n"
            "print(sorted(values.local_accepts()))")
        assert reopened.ok, reopened.error
        assert reopened.stdout.strip() == "['numpy']"
        result = await plain.execute(
            "got = tools.frame()\nprint(type(got).__name__, got.index.tolist(), got['price'].isna().tolist())")
        assert result.ok, result.error
        assert result.stdout.strip() == "DataFrame [10, 20, 30, 40] [False, True, False, False]"
        assert "PlainFormWarning" in result.stderr and "plain JSON form" in result.stderr
        assert result.tool_calls[0].result["__ka__"] == "dataframe"
