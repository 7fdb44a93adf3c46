"""Image observations: what a plot the model sees costs in tokens, next to the text-only observation of the same cell.

Three real cells run through the agent loop (``Agent`` with a
``ScriptedModel`` that takes images) in one sandboxed kernel with
matplotlib: a default figure; a large one (18 x 12 inches at 150 dpi, so
it is downscaled to the step's pixel limit); and four default figures in
one cell (the default limit of images per step). For each cell, in the
same run:

* **text-only** (the baseline): what the model got before images were
  sent, the cell's output as text (``<Figure size 640x480 with 1 Axes>``);
* **with images**: the observation's text (with its image notes) plus
  each image sent, as each provider counts images:
  Anthropic's documented estimate, width x height / 750 (after its own
  resize to 1,568 px and about 1.15 megapixels); OpenAI's tile formula
  for GPT-4o-class models, 85 + 170 per 512 px tile after fitting in
  2,048 px and scaling the short side to 768 px (high detail; ``auto``
  picks it for these sizes), with the low-detail 85 tokens in the note.

Text is counted with o200k_base through tiktoken (see bench/_tokenizer.py).
The host time to check and bound a cell's images is in the notes.
Run: ``python bench/bench_image_tokens.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kernel_agent.agent import Agent, ImageLimits  # noqa: E402
from kernel_agent.agent.images import select_images  # noqa: E402
from kernel_agent.agent.observation import cell_notes, cell_output_text  # noqa: E402
from kernel_agent.agent.result import Execution  # noqa: E402
from kernel_agent.models.images import ImagePart, anthropic_image_tokens, openai_image_tokens  # noqa: E402
from kernel_agent.models.scripted import ScriptedModel  # noqa: E402

from _benchlib import Row, bench_main, make_row  # noqa: E402
from _tokenizer import TokenCounter, load_counter  # noqa: E402

BENCHMARK = "image_tokens"
MESSAGE_OVERHEAD = 4  # tokens of role and framing per message, as in bench_tokens.py
SETUP = ("import matplotlib\nmatplotlib.use('module://matplotlib_inline.backend_inline')\n"
         "import matplotlib.pyplot as plt\nimport numpy as np\nx = np.linspace(0, 10, 200)\n")
CELLS = {
    "a default matplotlib figure": SETUP + "plt.plot(x, np.sin(x))\nplt.title('sin')\nplt.show()",
    "a large figure (18x12 in at 150 dpi), downscaled": SETUP + (
        "plt.figure(figsize=(18, 12), dpi=150)\nplt.plot(x, np.cos(x))\nplt.title('cos')\nplt.show()"),
    "four default figures in one cell (the per-step limit)": SETUP + (
        "for k in range(4):\n    plt.figure()\n    plt.plot(x, np.sin(x * (k + 1)))\n    plt.show()"),
}


def log(message: str) -> None:
    print(f"[bench_image_tokens] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Measured:
    """One cell: its text-only observation, its observation with images, and the host time to bound them."""

    name: str
    text_only: str
    with_images: str
    images: tuple[ImagePart, ...]
    source_sizes: list[str]
    select_ms: float


async def run_cells() -> list[Measured]:
    model = ScriptedModel([*CELLS.values(), {"text": "done"}], vision=True)
    agent = Agent(model, notebook=False, max_steps=len(CELLS) + 2)
    result = await agent.run("Plot these and look at them.")
    await agent.close()
    measured = []
    for name, step in zip(CELLS, result.steps, strict=False):
        [execution] = step.executions
        measured.append(_measure(name, execution))
    return measured


def _measure(name: str, execution: Execution) -> Measured:
    cell = execution.cell
    assert cell is not None and cell.error is None, cell
    # What the model got before images were sent: the same output as text (these outputs are short: no cut).
    text_only = "\n".join(part for part in (cell_output_text(cell).rstrip("\n"), cell_notes(cell)) if part)
    started = time.perf_counter()
    select_images(cell, ImageLimits(), room=ImageLimits().max_images, vision=True)
    select_ms = (time.perf_counter() - started) * 1000
    sizes = [f"{e['width']}x{e['height']}" for e in execution.image_record]
    return Measured(name, text_only, execution.observation, execution.images, sizes, select_ms)


def rows_for(m: Measured, counter: TokenCounter) -> list[Row]:
    text_only = counter.count(m.text_only) + MESSAGE_OVERHEAD
    text = counter.count(m.with_images) + MESSAGE_OVERHEAD
    anthropic = sum(anthropic_image_tokens(i.width, i.height) for i in m.images)
    openai = sum(openai_image_tokens(i.width, i.height) for i in m.images)
    # OpenAI: the images ride in one extra user message, each after a one-line label (about 20 tokens).
    openai_framing = MESSAGE_OVERHEAD + 20 * len(m.images) if m.images else 0
    sent = ", ".join(f"{i.width}x{i.height} {i.media_type.removeprefix('image/').upper()} {i.byte_size:,} B"
                     for i in m.images)
    note = (f"{len(m.images)} image(s) sent: {sent} (shown as {', '.join(m.source_sizes)}); text part "
            f"{text} tokens; checking and bounding the images on the host took {m.select_ms:.1f} ms")
    baseline = "text-only observation of the same cell"
    return [
        make_row(BENCHMARK, f"{m.name}: Anthropic tokens", text + anthropic, "tokens", baseline=text_only,
                 baseline_name=baseline, note=f"{note}; images {anthropic:,} tokens by (w*h)/750"),
        make_row(BENCHMARK, f"{m.name}: OpenAI tokens (high detail)", text + openai + openai_framing, "tokens",
                 baseline=text_only, baseline_name=baseline,
                 note=f"images {openai:,} tokens by the tile formula (low detail: {85 * len(m.images)}), plus "
                      f"about {openai_framing} tokens for the user message that carries them"),
    ]


def run(quick: bool = False) -> list[Row]:
    """Run the cells in a sandboxed kernel and count each observation both ways (see _benchlib.Row)."""
    counter = load_counter(log=log)
    log(f"tokenizer: {counter.name} ({counter.how})")
    started = time.perf_counter()
    measured = asyncio.run(run_cells())
    log(f"cells ran in {time.perf_counter() - started:.1f} s{' (--quick changes nothing here)' if quick else ''}")
    rows: list[Row] = []
    for m in measured:
        rows += rows_for(m, counter)
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    bench_main(run, __doc__.splitlines()[0], "accepted for symmetry: the counts are deterministic", argv)


if __name__ == "__main__":
    main()
