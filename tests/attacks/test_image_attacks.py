"""Images as an attack on the observation and the record: many images, crafted records, exotic encodings.

The kernel chooses how many images a cell shows and every byte of them; a notebook given to resume chooses
every field of its image records. The model's observation stays bounded (``Agent(observation_limit=)``
holds whatever a cell shows), the host decodes a bounded number of images per cell, and what is sent to a
provider is an image any provider takes: 8-bit, not animated, no CMYK.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from PIL import Image

from kernel_agent import Agent, ImageLimits, ScriptedModel, Session, StopReason
from kernel_agent.agent.images import images_of_record

from .support import module_loop

pytestmark = module_loop

# Thousands of tiny images in one cell: each display is a few hundred bytes, far inside max_output_bytes.
MANY_TINY_IMAGES = """
import base64, io
from PIL import Image
from IPython.display import display
buffer = io.BytesIO()
Image.new('RGB', (1, 1), 'red').save(buffer, 'PNG')
data = base64.b64encode(buffer.getvalue()).decode()
for _ in range(3000):
    display({'image/png': data}, raw=True)
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def recorded(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Session]:
    root = tmp_path_factory.mktemp("image-attacks")
    workspace = root / "workspace"
    workspace.mkdir()
    async with Session(workspace, notebook=root / "run.ipynb", default_timeout=120) as session:
        yield session


def observation_record(session: Session) -> dict[str, Any]:
    assert session.notebook is not None
    cells = json.loads(session.notebook.read_text())["cells"]
    [*_, cell] = [c for c in cells if c["metadata"]["kernel_agent"].get("kind") == "code"]
    observation: dict[str, Any] = cell["metadata"]["kernel_agent"]["observation"]
    return observation


async def test_thousands_of_images_in_one_cell_keep_the_observation_and_record_bounded(recorded: Session) -> None:
    """Attack: show 3,000 tiny images; each would add a note to the observation and an entry to the record."""
    model = ScriptedModel([MANY_TINY_IMAGES, {"text": "done"}])
    limit = 4000
    result = await Agent(model, max_steps=3, observation_limit=limit).run("Show them.", session=recorded)
    assert result.stop_reason is StopReason.ANSWERED, result.error
    assert len(result.steps[0].executions[0].cell.outputs) >= 1000  # thousands arrive (iopub may drop some)
    assert len(model.images_seen) == ImageLimits().max_images
    observation = result.steps[0].observation
    assert len(observation) <= 2 * limit, f"the observation is {len(observation):,} characters"
    assert "more image outputs" in observation  # the model still learns they exist
    assert len(json.dumps(observation_record(recorded))) <= 8 * limit


def shown(image: Image.Image, fmt: str, **options: Any) -> dict[str, Any]:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    mime = "image/png" if fmt == "PNG" else "image/jpeg"
    return {"output_type": "display_data", "data": {mime: base64.b64encode(buffer.getvalue()).decode()},
            "metadata": {}}


async def test_a_crafted_record_rebuilds_no_more_images_than_a_step_sends() -> None:
    """Attack: a notebook marks 30 image outputs of one cell as sent; resume must not attach 30 images."""
    outputs = [shown(Image.new("RGB", (8, 8), "blue"), "PNG") for _ in range(30)]
    record = [{"output": index, "sent": True} for index in range(30)]
    limits = ImageLimits()
    assert len(images_of_record(outputs, record, limits)) == limits.max_images


def exotic(save: str) -> str:
    """Kernel code showing an image Pillow made and saved with ``save`` (a statement using ``image`` and ``b``)."""
    return ("import io\nfrom PIL import Image\nfrom IPython.display import display, Image as Shown\n"
            f"b = io.BytesIO()\n{save}\ndisplay(Shown(b.getvalue()))")


EXOTIC = {
    "cmyk-jpeg": "Image.new('CMYK', (64, 48), (0, 255, 255, 0)).save(b, 'JPEG')",
    "16-bit-png": "Image.new('I;16', (64, 48), 40000).save(b, 'PNG')",
    "animated-png": ("frames = [Image.new('RGB', (64, 48), c) for c in ('red', 'green', 'blue')]\n"
                     "frames[0].save(b, 'PNG', save_all=True, append_images=frames[1:], duration=100)"),
}


@pytest.mark.parametrize("save", EXOTIC.values(), ids=EXOTIC.keys())
async def test_an_exotic_but_decodable_image_is_re_encoded_before_a_provider_sees_it(recorded: Session,
                                                                                    save: str) -> None:
    """Attack: show an image the host decodes but a provider may refuse (a 400 that would end every later step)."""
    model = ScriptedModel([exotic(save), {"text": "done"}])
    result = await Agent(model, max_steps=3).run("Show it.", session=recorded)
    assert result.stop_reason is StopReason.ANSWERED, result.error
    [image] = model.images_seen
    raw = base64.b64decode(image.data, validate=True)
    with Image.open(io.BytesIO(raw)) as sent:
        assert getattr(sent, "n_frames", 1) == 1
        assert sent.mode in ("L", "RGB", "RGBA")
        assert (sent.width, sent.height) == (64, 48)
    if image.media_type == "image/png":
        assert raw[24] == 8  # 8 bits a sample
    assert "re-encoded" in result.steps[0].observation


# A real 1000x1000 progressive JPEG whose smallest scan (a 12-byte DC refinement, no entropy data) is repeated
# 60,000 times: about 700 KB, within max_bytes, and each scan is one more pass of the decoder over the image.
SCAN_BOMB = """
import io, struct
from PIL import Image
from IPython.display import display, Image as Shown
b = io.BytesIO()
Image.effect_noise((1000, 1000), 50).convert('RGB').save(b, 'JPEG', progressive=True, quality=90)
raw, pos, segments = b.getvalue(), 2, []
while raw[pos + 1] != 0xD9:
    end = pos + 2 + struct.unpack('>H', raw[pos + 2:pos + 4])[0]
    if raw[pos + 1] == 0xDA:  # entropy-coded data runs to the next marker (not a stuffed 0xFF00 or a restart)
        while raw[end] != 0xFF or raw[end + 1] == 0 or 0xD0 <= raw[end + 1] <= 0xD7:
            end += 1
    segments.append(raw[pos:end])
    pos = end
smallest = min((s for s in segments if s[1] == 0xDA), key=len)
display(Shown(b'\\xff\\xd8' + b''.join(segments) + smallest * 60_000 + b'\\xff\\xd9', format='jpeg'))
"""


async def test_a_jpeg_of_thousands_of_scans_is_refused_before_decoding(recorded: Session) -> None:
    """Attack: a progressive JPEG of 60,000 scans (seconds of the host's CPU per image, outside the sandbox)."""
    model = ScriptedModel([SCAN_BOMB, {"text": "done"}])
    result = await Agent(model, max_steps=3).run("Show it.", session=recorded)
    assert result.stop_reason is StopReason.ANSWERED, result.error
    assert model.images_seen == []
    assert "scans (at most 256 are decoded)" in result.steps[0].observation
