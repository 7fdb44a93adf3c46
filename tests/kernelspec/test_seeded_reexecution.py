"""nbclient re-executing a recorded notebook draws the recorded random values: the setup cell seeds the kernel."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat

from kernel_agent import Session
from kernel_agent.kernelspec.spec import install_kernelspec
from kernel_agent.record import format as fmt

from .test_jupyter_reexecution import _code_cells, _nbclient, _outputs

DRAWS = ["import random\nprint(random.random(), random.randint(0, 10**9))",
         "import numpy as np\nprint(np.random.rand(2).tolist(), np.random.randint(10**9))"]


async def test_nbclient_reproduces_recorded_random_values(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)  # Jupyter starts the kernel here (see test_jupyter_reexecution's fixture)
    prefix = tmp_path / "prefix"
    install_kernelspec(user=False, prefix=str(prefix))
    (tmp_path / "workspace").mkdir()
    notebook = tmp_path / "seeded.ipynb"
    async with Session(tmp_path / "workspace", notebook=notebook) as session:  # a fresh random seed, recorded
        for code in DRAWS:
            assert (await session.execute(code)).ok
    kernels = prefix / "share" / "jupyter" / "kernels"

    executed = await _nbclient(nbformat.read(notebook, as_version=4), tmp_path, kernels)
    recorded = [_outputs(cell) for cell in _code_cells(nbformat.read(notebook, as_version=4))]
    assert [_outputs(cell) for cell in _code_cells(executed)] == recorded

    # A copy with its seed edited (nbclient does not check the chain; the setup cell reads the copy): other values.
    document = json.loads(notebook.read_text())
    document["metadata"][fmt.METADATA_KEY]["session"]["seed"]["value"] ^= 1
    elsewhere = tmp_path / "edited"
    elsewhere.mkdir(mode=0o755)
    (elsewhere / notebook.name).write_text(json.dumps(document))
    other = await _nbclient(nbformat.read(elsewhere / notebook.name, as_version=4), elsewhere, kernels)
    differing = [_outputs(cell) for cell in _code_cells(other)]
    assert differing[0] != recorded[0] and differing[1] != recorded[1]
