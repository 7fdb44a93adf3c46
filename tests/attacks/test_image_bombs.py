"""Images as an attack on the host: a kernel shows pictures built to cost the host memory or stall its event loop.

The agent loop decodes the images a cell shows (to check them and to downscale them for the model), so a
cell can try a decompression bomb: a PNG whose header claims a huge size over a tiny zlib stream, or a real
image just inside the decoding limit. The host must refuse the first without decoding it, and do the second
in a worker thread with memory bounded by the limit, while the loop goes on.
"""

from __future__ import annotations

import gc

import pytest

from kernel_agent import Agent, ImageLimits, ScriptedModel, Session

from ..conftest import LoopStallMonitor, PeakRss

# serial: peak host RSS is what is measured (tests/run_suite.py runs these alone).
pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.serial]

# A valid PNG of 20,000 x 20,000 black pixels (1 bit each, 50 MB raw) in about 50 KB: zlib of zero rows.
BOMB = """
import base64, struct, zlib
from IPython.display import display

def chunk(kind, data):
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))

side = 20_000
rows = zlib.compress((b'\\0' * (1 + side // 8)) * side, 9)
png = (b'\\x89PNG\\r\\n\\x1a\\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', side, side, 1, 0, 0, 0, 0))
       + chunk(b'IDAT', rows) + chunk(b'IEND', b''))
print(len(png), 'bytes')
display({'image/png': base64.b64encode(png).decode()}, raw=True)
"""
# A real 4,000 x 4,000 picture (the default decoding limit, 16 megapixels) that compresses to almost nothing.
LARGEST_ALLOWED = """
import io
from PIL import Image as Picture
from IPython.display import Image, display
buffer = io.BytesIO()
Picture.new('P', (4000, 4000), 3).save(buffer, 'PNG', transparency=0)
display(Image(buffer.getvalue()))
"""


async def test_a_decompression_bomb_is_refused_before_decoding(shared: Session) -> None:
    model = ScriptedModel([BOMB, {"text": "done"}])
    gc.collect()
    async with LoopStallMonitor() as stalls:
        with PeakRss() as rss:
            result = await Agent(model, max_steps=3).run("Show it.", session=shared)
    print(f"peak RSS growth {rss.growth / 1e6:.1f} MB, largest event-loop stall {stalls.max_gap * 1000:.1f} ms")
    assert model.images_seen == []
    assert "20000x20000 was not sent to you: at 20000x20000 it is too large to downscale" in (
        result.steps[0].observation)
    assert rss.growth < 40e6  # 20,000 x 20,000 pixels would be 400 MB to 1.6 GB decoded


async def test_the_largest_allowed_image_is_downscaled_off_the_loop_within_its_memory_bound(shared: Session) -> None:
    model = ScriptedModel([LARGEST_ALLOWED, {"text": "done"}])
    limits = ImageLimits()
    gc.collect()
    async with LoopStallMonitor() as stalls:
        with PeakRss() as rss:
            result = await Agent(model, max_steps=3, image_limits=limits).run("Show it.", session=shared)
    print(f"peak RSS growth {rss.growth / 1e6:.1f} MB, largest event-loop stall {stalls.max_gap * 1000:.1f} ms")
    [image] = model.images_seen
    assert (image.width, image.height) == (1072, 1072)  # sqrt(1,150,000), the pixel limit
    assert "(downscaled from 4000x4000" in result.steps[0].observation
    # At most about 10 bytes a pixel of the decoding limit (see ImageLimits), never an unbounded amount.
    assert rss.growth < 10 * limits.max_source_pixels + 40e6
