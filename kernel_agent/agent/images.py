"""Which images a cell showed go back to the model: checked, bounded, downscaled, or named in a note.

A cell's ``image/png`` and ``image/jpeg`` outputs (matplotlib figures arrive
as ``image/png`` through the inline backend) are hostile input: the kernel
chose every byte and every metadata field. So each image is taken only when
its base64 decodes, its bytes start with the PNG or JPEG signature its type
claims, and its width and height, read from the image's own header (never
from the kernel's ``metadata``), are sane. Then the step's limits apply:
at most :attr:`ImageLimits.max_images` images per step, each at most
:attr:`~ImageLimits.max_pixels` pixels, :attr:`~ImageLimits.max_edge` on
its long side and :attr:`~ImageLimits.max_bytes` bytes. A larger image is
downscaled with Pillow when it is installed (it is a dependency of
matplotlib); otherwise, or when it cannot be, it is left out. Every image
left out gets a note in the observation saying why, so the model knows it
exists; nothing here raises on bad input.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from kernel_agent.models.base import ObservationTurn, Turn
from kernel_agent.models.images import SENT_MEDIA_TYPES, ImagePart
from kernel_agent.runtime.results import CellResult

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SIGNATURE = b"\xff\xd8\xff"
# JPEG start-of-frame markers (they carry the dimensions); C4, C8 and CC are other segments.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
#: Start-of-scan markers a JPEG may hold (a progressive photo has about 10; an embedded thumbnail adds its own).
_MAX_JPEG_SCANS = 256
#: Image outputs of one cell that are decoded, named in a note and recorded; past them, one note for the rest.
#: A cell can show thousands of tiny images within max_output_bytes: each would cost a decode, a line of the
#: observation (which Agent(observation_limit=) bounds) and an entry of the notebook's record.
MAX_IMAGES_EXAMINED = 16
# PNG and JPEG cannot describe a side longer than this (JPEG: 65,535; PNG allows 2**31 - 1, which no real plot has).
_MAX_SIDE = 65_535


@dataclass(frozen=True)
class ImageLimits:
    """How many and how large the images sent to the model in one step may be.

    Defaults: 4 images a step, each at most 1.15 megapixels and 1,568 px on
    its long side (what Anthropic's models see without resizing: about 1,500
    tokens each) and 1 MB. ``max_in_conversation`` images at most stay
    attached in the whole conversation (Anthropic refuses a request with more
    than 100; each costs its tokens again at every step): older ones are
    replaced by a note, ``max_in_conversation // 2`` at a time, so the
    cached prompt prefix changes only that often. ``max_source_pixels`` and ``max_source_bytes``
    bound what is decoded at all: a larger image is not downscaled but left
    out (a decompression bomb costs the host nothing). Downscaling the
    largest image allowed holds at most about 10 bytes a pixel (160 MB at
    the default: the decoded image, its RGBA form, Pillow's premultiplied
    copy) for a moment, in a worker thread, one image at a time.
    """

    max_images: int = 4
    max_pixels: int = 1_150_000
    max_edge: int = 1568
    max_bytes: int = 1_000_000
    max_source_pixels: int = 16_000_000
    max_source_bytes: int = 16_000_000
    max_in_conversation: int = 20

    def __post_init__(self) -> None:
        if self.max_images < 0 or min(self.max_pixels, self.max_edge, self.max_bytes, self.max_in_conversation) < 1:
            raise ValueError("image limits: max_images must be at least 0, the others at least 1")


@dataclass(frozen=True)
class ImageSelection:
    """What became of the images one cell showed: the parts sent, a note for each, the record (no bytes)."""

    images: tuple[ImagePart, ...] = ()
    notes: tuple[str, ...] = ()
    record: tuple[dict[str, Any], ...] = field(default=())

    @property
    def text(self) -> str:
        """The notes as the observation shows them, one a line."""
        return "\n".join(self.notes)


class _Refused(Exception):
    """Why one image output is not sent (the message goes into its note)."""


def newest_images_only(conversation: list[Turn], limit: int) -> list[Turn]:
    """The conversation with at most ``limit`` images attached: the oldest others become a note.

    Above the limit, images are let go in blocks of ``limit // 2`` (the
    ones kept number between ``limit - limit // 2`` and ``limit``), so the
    conversation's prefix, which providers cache, changes only once a block.
    """
    total = sum(len(obs.images) for turn in conversation if isinstance(turn, ObservationTurn)
                for obs in turn.observations)
    if total <= limit:
        return conversation
    block = max(1, limit // 2)
    to_drop = ((total - limit) // block + 1) * block
    trimmed: list[Turn] = []
    for turn in conversation:
        if to_drop and isinstance(turn, ObservationTurn) and any(obs.images for obs in turn.observations):
            observations = []
            for obs in turn.observations:
                dropped, to_drop = min(to_drop, len(obs.images)), to_drop - min(to_drop, len(obs.images))
                if dropped:
                    note = (f"[{dropped} image(s) of this cell are no longer attached: only the newest {limit} "
                            "images stay in the conversation]")
                    obs = replace(obs, text=f"{obs.text}\n{note}", images=obs.images[dropped:])
                observations.append(obs)
            turn = ObservationTurn(tuple(observations))
        trimmed.append(turn)
    return trimmed


def has_images(cell: CellResult) -> bool:
    """Whether any output of the cell is an image (cheap: no decoding)."""
    return any(_image_entries(output) for output in cell.outputs)


def select_images(cell: CellResult, limits: ImageLimits, *, room: int, vision: bool,
                  model: str = "the model") -> ImageSelection:
    """The cell's images to send (at most ``room`` of them), with a note and a record entry for each image output.

    ``vision`` False: nothing is sent, each image is named in a note.
    CPU-bound (base64, and Pillow when an image must be downscaled): call it
    in a worker thread.
    """
    return _select(cell.outputs, limits, room=room, vision=vision, model=model)


def images_of_record(outputs: Sequence[Any], record: Sequence[Any], limits: ImageLimits) -> tuple[ImagePart, ...]:
    """The images a recorded observation sent, rebuilt from the recorded cell's outputs (to resume a conversation).

    ``record`` is the observation's ``images`` list from the notebook; both
    come from a file and are checked like a kernel's output: only outputs
    marked sent are taken, and they pass the same checks and limits again.
    """
    sent = {entry["output"] for entry in record
            if isinstance(entry, dict) and entry.get("sent") is True and isinstance(entry.get("output"), int)}
    kept = [output if index in sent and isinstance(output, dict) else {} for index, output in enumerate(outputs)]
    return _select(kept, limits, room=min(len(sent), limits.max_images), vision=True).images


def _select(outputs: Sequence[Any], limits: ImageLimits, *, room: int, vision: bool,
            model: str = "the model") -> ImageSelection:
    images: list[ImagePart] = []
    notes: list[str] = []
    record: list[dict[str, Any]] = []
    number = 1
    unexamined: list[int] = []
    for index, output in enumerate(outputs):
        for media_type, value in _image_entries(output)[:1]:  # one image per output: its richest form
            if number > MAX_IMAGES_EXAMINED:
                unexamined.append(index)
                continue
            entry: dict[str, Any] = {"output": index, "media_type": media_type}
            label = f"image {number} (output {index + 1} of the cell, {media_type})"
            number += 1
            try:
                if media_type not in SENT_MEDIA_TYPES:
                    raise _Refused(f"only {' and '.join(SENT_MEDIA_TYPES)} are sent to models")
                raw = _decode(value, limits)
                width, height = image_size(raw, media_type)
                entry.update(width=width, height=height)
                if not vision:
                    raise _Refused(f"{model} takes no image input (vision is off)")
                if len(images) >= room:
                    raise _Refused(f"the limit of {limits.max_images} images per step was reached")
                part, how = _bounded(raw, media_type, width, height, limits)
            except _Refused as reason:
                entry.update(sent=False, reason=str(reason))
                notes.append(f"[{label}{_size_of(entry)} was not sent to you: {reason}; it is in the notebook]")
            else:
                part = ImagePart(part.media_type, part.data, part.width, part.height, output_index=index)
                images.append(part)
                entry.update(sent=True, sent_media_type=part.media_type, sent_width=part.width,
                             sent_height=part.height, sent_bytes=part.byte_size)
                notes.append(f"[{label}, {part.width}x{part.height}: attached as an image{how}]")
            record.append(entry)
    if unexamined:
        notes.append(f"[{len(unexamined):,} more image outputs of the cell (outputs {unexamined[0] + 1} to "
                     f"{unexamined[-1] + 1}) were not examined or sent to you: only the first "
                     f"{MAX_IMAGES_EXAMINED} images of a cell are; they are in the notebook]")
    return ImageSelection(tuple(images), tuple(notes), tuple(record))


def image_size(raw: bytes, media_type: str) -> tuple[int, int]:
    """(width, height) from the image's own header; raises _Refused when the bytes are not the claimed type."""
    if media_type == "image/png":
        # Signature, then the IHDR chunk: length 13, "IHDR", width, height (big-endian).
        if not raw.startswith(_PNG_SIGNATURE) or len(raw) < 33 or raw[12:16] != b"IHDR":
            raise _Refused("its bytes are not a PNG image")
        width, height = struct.unpack(">II", raw[16:24])
    else:
        if not raw.startswith(_JPEG_SIGNATURE):
            raise _Refused("its bytes are not a JPEG image")
        _marker, width, height = _jpeg_frame(raw)
        # Each scan of a progressive JPEG is a pass over the whole image: a few bytes can ask for thousands
        # of passes (seconds to a minute of the host's CPU, outside the sandbox's share). Real ones have ~10.
        # 0xFF is byte-stuffed in entropy-coded data, so this marker appears only as a marker.
        if (scans := raw.count(b"\xff\xda")) > _MAX_JPEG_SCANS:
            raise _Refused(f"it has {scans:,} scans (at most {_MAX_JPEG_SCANS} are decoded)")
    if not (0 < width <= _MAX_SIDE and 0 < height <= _MAX_SIDE):
        raise _Refused(f"its header gives an impossible size ({width}x{height})")
    return width, height


def _jpeg_frame(raw: bytes) -> tuple[int, int, int]:
    """(start-of-frame marker, width, height): walk the JPEG's marker segments (each step moves forward: it ends)."""
    position = 2
    while position + 4 <= len(raw):
        if raw[position] != 0xFF:
            break
        marker = raw[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            position += 2
            continue
        (length,) = struct.unpack(">H", raw[position + 2:position + 4])
        if length < 2:
            break
        if marker in _JPEG_SOF:
            if position + 9 > len(raw):
                break
            height, width = struct.unpack(">HH", raw[position + 5:position + 9])
            return marker, width, height
        if marker in (0xD9, 0xDA):  # end of image, or image data before any frame header
            break
        position += 2 + length
    raise _Refused("its JPEG header has no frame size")


def _image_entries(output: Any) -> list[tuple[str, Any]]:
    """The image forms of a display output, the ones models take first."""
    if not isinstance(output, dict) or output.get("output_type") not in ("display_data", "execute_result"):
        return []
    data = output.get("data")
    if not isinstance(data, dict):
        return []
    kinds = [kind for kind in data if isinstance(kind, str) and kind.startswith("image/")]
    kinds.sort(key=lambda kind: (kind not in SENT_MEDIA_TYPES, kind))
    return [(kind, data[kind]) for kind in kinds]


def _decode(value: Any, limits: ImageLimits) -> bytes:
    """The image bytes from base64 text (a string, or nbformat's list of strings), strictly."""
    if isinstance(value, list) and all(isinstance(line, str) for line in value):
        value = "".join(value)
    if not isinstance(value, str):
        raise _Refused("its data is not base64 text")
    if len(value) > limits.max_source_bytes * 4 // 3 + 1024:
        raise _Refused(f"it is larger than {limits.max_source_bytes:,} bytes")
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise _Refused("its data is not valid base64") from None


def _bounded(raw: bytes, media_type: str, width: int, height: int, limits: ImageLimits) -> tuple[ImagePart, str]:
    """The image within the limits (as it is, or downscaled), and how it was changed (for the note)."""
    scale = min(1.0, limits.max_edge / max(width, height), math.sqrt(limits.max_pixels / (width * height)))
    fits = scale >= 1.0 and len(raw) <= limits.max_bytes
    if not fits and width * height > limits.max_source_pixels:
        raise _Refused(f"at {width}x{height} it is too large to downscale (more than "
                       f"{limits.max_source_pixels:,} pixels)")
    try:
        from PIL import Image
    except ImportError:
        if fits:  # the header was checked; without Pillow the body cannot be
            return ImagePart(media_type, base64.b64encode(raw).decode("ascii"), width, height), ""
        raise _Refused(f"it is larger than the limits ({limits.max_pixels:,} pixels, {limits.max_edge} px a side, "
                       f"{limits.max_bytes:,} bytes) and Pillow is not installed to downscale it") from None
    try:
        if fits:
            unusual = _check_decodes(Image, raw, media_type, width, height)
            if unusual is None:
                return ImagePart(media_type, base64.b64encode(raw).decode("ascii"), width, height), ""
            return _downscaled(Image, raw, width, height, 1.0, limits), f" (re-encoded: it was {unusual})"
        part = _downscaled(Image, raw, width, height, scale, limits)
    except _Refused:
        raise
    except Exception as exc:  # noqa: BLE001 - a third-party decoder on hostile bytes: any failure is a refusal
        raise _Refused(f"it does not decode as an image ({type(exc).__name__})") from None
    return part, f" (downscaled from {width}x{height}, {len(raw):,} bytes)"


def _check_decodes(image_module: Any, raw: bytes, media_type: str, width: int, height: int) -> str | None:
    """Decode the whole image once (it is within the limits), so a provider is never sent a broken one.

    Returns why its own bytes should not be sent (then it is re-encoded), or None.
    """
    with image_module.open(io.BytesIO(raw)) as image:
        if image.size != (width, height):
            raise _Refused(f"its header says {width}x{height} but it decodes as {image.size[0]}x{image.size[1]}")
        image.load()
        return _unusual(image, raw, media_type)


def _unusual(image: Any, raw: bytes, media_type: str) -> str | None:
    """What makes a decodable image one a provider may refuse (a 400 that ends the run, at every later step too).

    Providers take 8-bit, still PNG and baseline or progressive JPEG in grey or colour; a kernel can show
    16-bit, animated, CMYK or arithmetic-coded images that decode here. Those are re-encoded, not sent as is.
    """
    if getattr(image, "n_frames", 1) > 1:
        return "animated (its first frame is sent)"
    if media_type == "image/png":
        if raw[24] > 8:  # IHDR's bit depth
            return f"a {raw[24]}-bit PNG"
        return None if image.mode in ("1", "L", "LA", "P", "RGB", "RGBA") else f"a PNG in mode {image.mode}"
    if image.mode not in ("L", "RGB"):
        return f"a {image.mode} JPEG"
    marker, _width, _height = _jpeg_frame(raw)
    return None if marker in (0xC0, 0xC1, 0xC2) else "an arithmetic-coded or lossless JPEG"


def _downscaled(image_module: Any, raw: bytes, width: int, height: int, scale: float,
                limits: ImageLimits) -> ImagePart:
    """Decode with Pillow (its size checked against the header), shrink, and re-encode within max_bytes."""
    with image_module.open(io.BytesIO(raw)) as image:
        if image.size != (width, height):
            raise _Refused(f"its header says {width}x{height} but it decodes as {image.size[0]}x{image.size[1]}")
        size = (max(1, int(width * scale)), max(1, int(height * scale)))
        if image.format == "JPEG":
            image.draft("RGB", size)  # decode at a reduced scale: less work for a large photo
        alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
        mode = "RGBA" if alpha else "RGB"
        converted = image.convert(mode) if image.mode != mode else image
        # Shrunk in place before the copy that outlives the file: one full-size image in memory, not two.
        # reducing_gap: a fast box reduction first, then Lanczos (sharp lines and text, about half the time).
        converted.thumbnail(size, image_module.Resampling.LANCZOS, reducing_gap=1.0)
        picture = converted.copy()
    for _ in range(4):
        picture.thumbnail(size, image_module.Resampling.LANCZOS, reducing_gap=1.0)
        for media_type in ("image/png", "image/jpeg"):
            buffer = io.BytesIO()
            if media_type == "image/png":
                picture.save(buffer, format="PNG")
            else:
                flat = image_module.new("RGB", picture.size, "white")
                flat.paste(picture, mask=picture.getchannel("A") if picture.mode == "RGBA" else None)
                flat.save(buffer, format="JPEG", quality=85)
            if buffer.tell() <= limits.max_bytes:
                data = base64.b64encode(buffer.getvalue()).decode("ascii")
                return ImagePart(media_type, data, picture.size[0], picture.size[1])
        size = (max(1, picture.size[0] // 2), max(1, picture.size[1] // 2))
    raise _Refused(f"it stays larger than {limits.max_bytes:,} bytes even downscaled")


def _size_of(entry: dict[str, Any]) -> str:
    return f", {entry['width']}x{entry['height']}" if "width" in entry else ""
