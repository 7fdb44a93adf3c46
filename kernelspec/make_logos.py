"""Draw the kernel-agent kernel logos (PNG, no imaging library needed): ``python kernelspec/make_logos.py``.

A prompt chevron and a cursor on a dark rounded square; Jupyter shows
logo-32x32.png and logo-64x64.png in its launcher, logo-svg.svg where SVG is used.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent / "kernel-agent"
BACKGROUND, INK, CLEAR = (31, 41, 55, 255), (20, 184, 166, 255), (0, 0, 0, 0)


def _pixel(x: float, y: float) -> tuple[int, int, int, int]:
    """The colour at (x, y) in a unit square."""
    radius = 0.18
    cx, cy = min(max(x, radius), 1 - radius), min(max(y, radius), 1 - radius)
    if (x - cx) ** 2 + (y - cy) ** 2 > radius**2:
        return CLEAR
    # The chevron: two strokes meeting at (0.52, 0.5).
    for (x0, y0), (x1, y1) in (((0.22, 0.26), (0.52, 0.5)), ((0.52, 0.5), (0.22, 0.74))):
        t = max(0.0, min(1.0, ((x - x0) * (x1 - x0) + (y - y0) * (y1 - y0)) / ((x1 - x0) ** 2 + (y1 - y0) ** 2)))
        if (x - (x0 + t * (x1 - x0))) ** 2 + (y - (y0 + t * (y1 - y0))) ** 2 < 0.07**2:
            return INK
    if 0.56 <= x <= 0.82 and 0.68 <= y <= 0.78:  # the cursor
        return INK
    return BACKGROUND


def png(size: int) -> bytes:
    """A size x size RGBA PNG of the logo."""
    rows = b"".join(b"\0" + b"".join(bytes(_pixel((i + 0.5) / size, (j + 0.5) / size)) for i in range(size))
                    for j in range(size))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


SVG = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64" width="64" height="64">
  <rect width="64" height="64" rx="11.5" fill="#1f2937"/>
  <polyline points="14,16.6 33.3,32 14,47.4" fill="none" stroke="#14b8a6" stroke-width="9" stroke-linecap="round"
            stroke-linejoin="round"/>
  <rect x="35.8" y="43.5" width="16.6" height="6.4" fill="#14b8a6"/>
</svg>
"""

if __name__ == "__main__":
    for size in (32, 64):
        (HERE / f"logo-{size}x{size}.png").write_bytes(png(size))
    (HERE / "logo-svg.svg").write_text(SVG)
